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
    function cleanupTestCase() { countSpy.target = null; failedSpy.target = null }

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

    Registry { id: other }
    RegistryHandler {
        id: signalThrower
        registry: other
        priority: 1
        onNotified: (event) => { if (event.boom) throw new Error("signal boom"); root.log.push("signal:" + event.n) }
    }
    RegistryHandler {
        registry: other
        onNotified: (event) => root.log.push("sibling:" + event.n)
    }
    SignalSpy { id: failedSpy; target: other; signalName: "handlerFailed" }
    SignalSpy { id: countSpy; target: events; signalName: "countChanged" }

    function test_onNotifiedErrorIsIsolated() {
        failedSpy.clear()
        other.notify({ n: 1, boom: true })
        compare(log, ["sibling:1"])
        compare(failedSpy.count, 1)
        compare(failedSpy.signalArguments[0][0], signalThrower.handlerId)
        compare(failedSpy.signalArguments[0][1], "Error: signal boom")
        verify(/tst_registry\.qml:\d+$/.test(failedSpy.signalArguments[0][2]), failedSpy.signalArguments[0][2])
        other.notify({ n: 2 })
        compare(log, ["sibling:1", "signal:2", "sibling:2"], "the thrower still runs next time")
        compare(failedSpy.count, 1)
    }

    function test_thrownNonErrorValue() {
        var failures = []
        var onFailed = (id, message, location) => failures.push([message, location])
        events.handlerFailed.connect(onFailed)
        createTemporaryObject(handlerComponent, root, { registry: events, handler: (e) => { throw "plain text" } })
        var before = events.failureCount
        events.notify({ n: 4 })
        events.handlerFailed.disconnect(onFailed)
        compare(failures, [["plain text", ""]])
        compare(events.failureCount, before + 1)
        compare(log, ["high:4", "middle:4", "low:4"])
    }

    function test_countFollowsHandlers() {
        countSpy.clear()
        var h = createTemporaryObject(handlerComponent, root, { registry: events, handler: () => {} })
        compare(events.count, 4)
        compare(countSpy.count, 1)
        h.enabled = false
        compare(events.count, 3)
        compare(countSpy.count, 2)
    }

    function test_nestedNotifyKeepsEachEvent() {
        var seen = []
        var outerEvent = { name: "outer" }
        var innerEvent = { name: "inner" }
        var relay = createTemporaryObject(handlerComponent, root, { registry: events, priority: 50,
            handler: (e) => { seen.push(e); if (e === outerEvent) other.notify(innerEvent) } })
        var listener = createTemporaryObject(handlerComponent, root, { registry: other, priority: 50,
            handler: (e) => seen.push(e) })
        events.notify(outerEvent)
        compare(seen.length, 2)
        verify(seen[0] === outerEvent)
        verify(seen[1] === innerEvent, "the inner notify's own object")
    }

    function test_reentrantNotifyOfTheSameRegistry() {
        var depth = 0
        var h = createTemporaryObject(handlerComponent, root, { registry: events, priority: 50,
            handler: (e) => { if (e.n < 3) { ++depth; events.notify({ n: e.n + 1 }) } } })
        events.notify({ n: 1 })
        compare(depth, 2)
        compare(log, ["high:3", "middle:3", "low:3", "high:2", "middle:2", "low:2", "high:1", "middle:1", "low:1"])
    }

    function test_handlerAddedDuringNotifyRunsFromTheNextOne() {
        var added = null
        var adder = createTemporaryObject(handlerComponent, root, { registry: events, priority: 50,
            handler: (e) => { if (!added) added = handlerComponent.createObject(root, { registry: events, priority: 60, handler: (x) => root.log.push("added:" + x.n) }) } })
        events.notify({ n: 1 })
        compare(log, ["high:1", "middle:1", "low:1"])
        log = []
        events.notify({ n: 2 })
        compare(log, ["added:2", "high:2", "middle:2", "low:2"])
        added.destroy()
    }

    Component {
        id: warningRaiser
        RegistryHandler {
            registry: other
            onNotified: (event) => { root.log.push("ran:" + event.n); events.notify() }
        }
    }

    function test_sigregWarningInsideOnNotifiedIsNotItsFailure() {
        // The handler runs fine and makes a call Sigreg warns about: the
        // warning is the call's, not a failure of the handler.
        var h = createTemporaryObject(warningRaiser, root)
        failedSpy.clear()
        var before = other.failureCount
        ignoreWarning(/Registry\.notify\(\) needs an event argument/)
        other.notify({ n: 6 })
        compare(log, ["signal:6", "sibling:6", "ran:6"])
        compare(failedSpy.count, 0)
        compare(other.failureCount, before)
    }

    function test_returnedErrorIsNotAFailure() {
        var before = events.failureCount
        var returned = 0
        var h = createTemporaryObject(handlerComponent, root, { registry: events,
            handler: (e) => { ++returned; return new Error("a value " + e.n) } })
        events.notify({ n: 5 })
        compare(returned, 1, "the handler ran and returned its Error")
        compare(events.failureCount, before, "only a throw is a failure")
        compare(log, ["high:5", "middle:5", "low:5"])
    }
}
