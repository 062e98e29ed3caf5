// SPDX-License-Identifier: MIT
import QtQuick
import QtTest
import Sigreg

TestCase {
    id: root
    name: "Registry"

    property var log: []

    Registry { id: events }

    RegistryHandler {
        id: low
        registry: events
        priority: -5
        onNotified: (event) => root.log.push("low:" + event.n)
    }
    RegistryHandler {
        id: high
        registry: events
        priority: 10
        onNotified: (event) => root.log.push("high:" + event.n)
    }
    RegistryHandler {
        id: middle
        registry: events
        handler: function (event) { root.log.push("middle:" + event.n) }
    }

    function init() { log = [] }

    function test_priorityOrder() {
        compare(events.count, 3)
        events.notify({ n: 1 })
        compare(log, ["high:1", "middle:1", "low:1"])
    }

    function test_sameObjectReachesEveryHandler() {
        var seen = []
        var a = createTemporaryObject(handlerComponent, root, { registry: events, handler: (e) => seen.push(e) })
        var b = createTemporaryObject(handlerComponent, root, { registry: events, handler: (e) => seen.push(e) })
        var event = { n: 2 }
        events.notify(event)
        compare(seen.length, 2)
        verify(seen[0] === event, "the JS object itself, not a copy")
        verify(seen[1] === event)
    }

    Component { id: handlerComponent; RegistryHandler {} }

    function test_jsErrorIsIsolated() {
        var failures = []
        var onFailed = (id, message, location) => failures.push({ id: id, message: message, location: location })
        events.handlerFailed.connect(onFailed)
        var thrower = createTemporaryObject(handlerComponent, root, {
            registry: events, priority: 100, handler: function (e) { throw new Error("boom " + e.n) } })
        events.notify({ n: 3 })
        events.handlerFailed.disconnect(onFailed)
        compare(log, ["high:3", "middle:3", "low:3"], "siblings ran")
        compare(failures.length, 1)
        compare(failures[0].id, thrower.handlerId)
        compare(failures[0].message, "Error: boom 3")
        verify(/tst_registry\.qml:\d+$/.test(failures[0].location), failures[0].location)
    }
}
