// SPDX-License-Identifier: MIT
// RegistryHandler: registration life cycle, dynamic creation, bad input.
import QtQuick
import QtTest
import Sigreg

TestCase {
    id: root
    name: "RegistryHandler"
    width: 200
    height: 200
    when: windowShown

    property var log: []

    Registry { id: first }
    Registry { id: second }
    QtObject { id: notARegistry }

    Component { id: handlerComponent; RegistryHandler {} }
    Component { id: registryComponent; Registry {} }

    function init() { log = [] }

    Component {
        id: staticTies
        Item {
            RegistryHandler { registry: first; priority: 7; handler: (e) => root.log.push("first") }
            RegistryHandler { registry: first; priority: 7; handler: (e) => root.log.push("second") }
            RegistryHandler { registry: first; priority: 7; handler: (e) => root.log.push("third") }
            RegistryHandler { registry: first; priority: 8; handler: (e) => root.log.push("higher") }
        }
    }

    function test_equalPrioritiesDeclaredTogetherRunInReverse() {
        // As documented on `priority`: registration order, and QML completes
        // the objects of one component last-declared first. If a Qt version
        // changes that order, this test and the documentation must change.
        var item = createTemporaryObject(staticTies, root)
        root.log = []
        first.notify(1)
        compare(root.log, ["higher", "third", "second", "first"])
    }

    function test_enabledUnregistersAndRegistersAgain() {
        var h = createTemporaryObject(handlerComponent, root, { registry: first, handler: (e) => root.log.push(e) })
        verify(h.registered)
        var firstId = h.handlerId
        verify(first.contains(firstId))
        h.enabled = false
        verify(!h.registered)
        compare(h.handlerId, 0)
        verify(!first.contains(firstId))
        first.notify("off")
        compare(log, [])
        h.enabled = true
        verify(h.registered)
        verify(h.handlerId > firstId, "a new id, never reused")
        first.notify("on")
        compare(log, ["on"])
    }

    function test_switchingRegistry() {
        var h = createTemporaryObject(handlerComponent, root, { registry: first, handler: (e) => root.log.push(e) })
        var before = second.count
        h.registry = second
        compare(first.count, 0)
        compare(second.count, before + 1)
        first.notify("to first")
        second.notify("to second")
        compare(log, ["to second"])
        h.registry = null
        verify(!h.registered)
        compare(second.count, before)
        second.notify("gone")
        compare(log, ["to second"])
    }

    function test_priorityChangeReorders() {
        var a = createTemporaryObject(handlerComponent, root, { registry: first, priority: 1, handler: () => root.log.push("a") })
        var b = createTemporaryObject(handlerComponent, root, { registry: first, priority: 2, handler: () => root.log.push("b") })
        first.notify(0)
        compare(log, ["b", "a"])
        log = []
        a.priority = 3
        first.notify(0)
        compare(log, ["a", "b"])
        log = []
        b.priority = 3 // a tie: registration order, and b registered again last
        first.notify(0)
        compare(log, ["a", "b"])
        compare(first.count, 2)
    }

    function test_handlerRemovedByIdFromTheRegistry() {
        var h = createTemporaryObject(handlerComponent, root, { registry: first, handler: (e) => root.log.push(e) })
        var id = h.handlerId
        verify(first.remove(id))
        verify(!first.remove(id), "exactly one removal succeeds")
        first.notify("x")
        compare(log, [])
        // The element knows: not registered, until it is enabled again.
        verify(!h.registered)
        compare(h.handlerId, 0)
        h.enabled = false
        h.enabled = true
        verify(h.registered)
        verify(h.handlerId > id)
        first.notify("y")
        compare(log, ["y"])
    }

    function test_clearUnregistersElements() {
        var a = createTemporaryObject(handlerComponent, root, { registry: second, handler: (e) => root.log.push("a") })
        var b = createTemporaryObject(handlerComponent, root, { registry: second, onNotified: (e) => root.log.push("b") })
        var changes = 0
        a.registeredChanged.connect(() => changes++)
        compare(second.clear(), 2)
        verify(!a.registered)
        verify(!b.registered)
        compare(changes, 1)
        second.notify(1)
        compare(log, [])
    }

    function test_handlerRemovingItselfDuringNotify() {
        var h
        h = createTemporaryObject(handlerComponent, root, { registry: first, handler: (e) => { root.log.push(e); h.enabled = false } })
        first.notify(1)
        first.notify(2)
        compare(log, [1])
        verify(!h.registered)
    }

    function test_handlerDestroyedByAnother() {
        var victim = handlerComponent.createObject(root, { registry: first, priority: 0, handler: (e) => root.log.push("victim") })
        var killer = createTemporaryObject(handlerComponent, root, { registry: first, priority: 5,
            handler: (e) => { root.log.push("killer"); victim.destroy() } })
        first.notify(1)
        // destroy() is deferred: the victim still runs this time, then is gone.
        compare(log, ["killer", "victim"])
        tryCompare(first, "count", 1)
        log = []
        first.notify(2)
        compare(log, ["killer"])
    }

    function test_wrongRegistryTypeWarns() {
        ignoreWarning(new RegExp("tst_handler\\.qml:\\d+:\\d+: QML RegistryHandler: RegistryHandler\\.registry must be a Registry \\(import Sigreg\\), not a QObject"))
        var h = createTemporaryObject(handlerComponent, root, { registry: notARegistry, handler: (e) => root.log.push(e) })
        verify(!h.registered)
        compare(h.registry, notARegistry)
    }

    function test_missingHandlerWarns() {
        ignoreWarning(new RegExp("tst_handler\\.qml:\\d+:\\d+: QML RegistryHandler: RegistryHandler has no onNotified handler and no handler function"))
        var h = createTemporaryObject(handlerComponent, root, { registry: first })
        verify(h.registered, "registered anyway: a Connections may still handle notified()")
    }

    function test_handlerThatIsNotAFunctionWarns() {
        ignoreWarning(new RegExp("QML RegistryHandler: RegistryHandler\\.handler must be a function, not 42"))
        ignoreWarning(new RegExp("QML RegistryHandler: RegistryHandler has no onNotified handler"))
        var h = createTemporaryObject(handlerComponent, root, { registry: first, handler: 42 })
        first.notify(1)
        compare(log, [])
    }

    function test_notifyWithoutArgumentWarns() {
        createTemporaryObject(handlerComponent, root, { registry: first, handler: (e) => root.log.push(e) })
        ignoreWarning(new RegExp("tst_handler\\.qml:\\d+:\\d+: QML Registry: Registry\\.notify\\(\\) needs an event argument"))
        first.notify()
        compare(log, [])
        // JS cannot tell notify() from notify(undefined): both warn.
        ignoreWarning(new RegExp("QML Registry: Registry\\.notify\\(\\) needs an event argument"))
        first.notify(undefined)
        compare(log, [])
        first.notify(null) // null is an event
        compare(log, [null])
    }

    function test_destroyedRegistry() {
        var reg = registryComponent.createObject(root)
        var h = createTemporaryObject(handlerComponent, root, { registry: reg, handler: (e) => root.log.push(e) })
        verify(h.registered)
        ignoreWarning(new RegExp("tst_handler\\.qml:\\d+:\\d+: QML RegistryHandler: its Registry was destroyed"))
        reg.destroy()
        tryCompare(h, "registered", false)
        compare(h.registry, null)
        h.registry = second
        verify(h.registered, "usable again with another registry")
    }

    function test_registryDestroyedWhileItsHandlerSpinsAnEventLoop() {
        // wait() runs deferred deletions, as a nested event loop may: the
        // registry's destruction waits until its notify returned.
        var reg = registryComponent.createObject(root)
        var a = createTemporaryObject(handlerComponent, root, { registry: reg, priority: 2,
            handler: (e) => { root.log.push("a" + e); reg.destroy(); wait(0); root.log.push("after wait") } })
        var b = createTemporaryObject(handlerComponent, root, { registry: reg, priority: 1,
            handler: (e) => root.log.push("b" + e) })
        ignoreWarning(new RegExp("tst_handler\\.qml:\\d+:\\d+: QML RegistryHandler: its Registry was destroyed"))
        ignoreWarning(new RegExp("tst_handler\\.qml:\\d+:\\d+: QML RegistryHandler: its Registry was destroyed"))
        ignoreWarning(new RegExp("tst_handler\\.qml:\\d+:\\d+: QML RegistryHandler: its Registry was destroyed"))
        ignoreWarning(new RegExp("tst_handler\\.qml:\\d+:\\d+: QML RegistryHandler: its Registry was destroyed"))
        reg.notify(1)
        compare(log, ["a1", "after wait", "b1"], "the walk went on with the registry alive")
        tryCompare(a, "registered", false)
        verify(!b.registered, "destroyed once the notify was over")
        verify(!a.registered && !b.registered)

        // The same in notifyAsync().
        log = []
        var reg2 = registryComponent.createObject(root)
        a.registry = reg2
        a.handler = (e) => { root.log.push("a" + e); reg2.destroy(); wait(0); root.log.push("after wait") }
        b.registry = reg2
        var settled = false
        reg2.notifyAsync(2).then(() => settled = true)
        compare(log, ["a2", "after wait", "b2"])
        tryVerify(() => settled)
        tryCompare(a, "registered", false)

        // The same when the registry's QObject parent is destroyed.
        log = []
        var host = registryHostComponent.createObject(root)
        a.registry = host.registry
        a.handler = (e) => { root.log.push("a" + e); host.destroy(); wait(0); root.log.push("after wait") }
        b.registry = host.registry
        ignoreWarning(new RegExp("tst_handler\\.qml:\\d+:\\d+: QML RegistryHandler: its Registry was destroyed"))
        ignoreWarning(new RegExp("tst_handler\\.qml:\\d+:\\d+: QML RegistryHandler: its Registry was destroyed"))
        a.registry.notify(3)
        compare(log, ["a3", "after wait", "b3"])
        tryCompare(a, "registered", false)
        verify(!b.registered)
    }
    Component { id: registryHostComponent; Item { property alias registry: hosted; Registry { id: hosted } } }

    Component {
        id: togetherComponent
        Item {
            Registry { id: local }
            RegistryHandler { registry: local; onNotified: (e) => {} }
        }
    }

    function test_registryAndHandlerTornDownTogetherDoNotWarn() {
        failOnWarning(/Registry was destroyed/)
        var item = togetherComponent.createObject(root)
        item.destroy()
        wait(0)
        var item2 = togetherComponent.createObject(root)
        item2.destroy()
        wait(0)
    }

    // Dynamic creation: a Repeater's delegates register and unregister.
    Component {
        id: repeaterHost
        Item {
            property alias model: repeater.model
            Repeater {
                id: repeater
                model: 0
                delegate: Item {
                    required property int index
                    RegistryHandler {
                        registry: first
                        priority: -index
                        onNotified: (event) => root.log.push(index)
                    }
                }
            }
        }
    }

    function test_repeaterDelegates() {
        var host = createTemporaryObject(repeaterHost, root)
        var base = first.count
        host.model = 20
        compare(first.count, base + 20)
        first.notify(0)
        compare(log.length, 20)
        compare(log[0], 0, "priority -index: delegate 0 first")
        compare(log[19], 19)
        host.model = 5 // the Repeater deletes later
        tryCompare(first, "count", base + 5)
        log = []
        first.notify(0)
        compare(log, [0, 1, 2, 3, 4])
        // Thousands in and out stay cheap and leave nothing behind.
        for (var round = 0; round < 3; ++round) {
            host.model = 2000
            tryCompare(first, "count", base + 2000)
            host.model = 0
            tryCompare(first, "count", base)
        }
    }

    // A ListView creates delegates for what is visible only, and recycles
    // them while scrolling: the registry follows.
    Component {
        id: listHost
        ListView {
            width: 100
            height: 100
            model: 1000
            cacheBuffer: 0
            currentIndex: -1 // else the current item stays alive off screen
            delegate: Item {
                required property int index
                width: 100
                height: 10
                RegistryHandler {
                    registry: second
                    onNotified: (event) => root.log.push(index)
                }
            }
        }
    }

    function test_listViewDelegates() {
        var base = second.count
        var view = createTemporaryObject(listHost, root)
        view.forceLayout()
        var live = second.count - base
        verify(live >= 10 && live <= 20, "only visible delegates are registered: " + live)
        second.notify(0)
        compare(log.length, live)
        verify(log.indexOf(0) >= 0)
        for (var y = 0; y < 5000; y += 250) {
            view.contentY = y
            view.forceLayout()
            wait(0) // deferred deletion of the delegates scrolled out
            verify(second.count - base <= 20, "bounded while scrolling")
        }
        wait(0) // the view deletes its old delegates later
        log = []
        second.notify(0)
        verify(log.indexOf(0) < 0, "delegate 0 scrolled out and was unregistered: " + log)
        verify(log.indexOf(480) >= 0, "delegate 480 is visible and registered: " + log)
        view.destroy()
        tryCompare(second, "count", base)
    }

    // Loader: active false destroys the handler.
    Loader {
        id: loader
        active: false
        sourceComponent: RegistryHandler { registry: first; onNotified: (e) => root.log.push("loaded") }
    }

    function test_loader() {
        var base = first.count
        loader.active = true
        compare(first.count, base + 1)
        first.notify(0)
        compare(log, ["loaded"])
        loader.active = false
        tryCompare(first, "count", base)
    }

    // An unloaded item waits for its deferred deletion; its handlers, of
    // both kinds, stop with its QML context, at once.
    Loader {
        id: itemLoader
        active: false
        sourceComponent: Item {
            id: loadedItem
            property string tag: "item"
            RegistryHandler { registry: first; handler: (e) => root.log.push("function " + loadedItem.tag) }
            RegistryHandler { registry: first; onNotified: (e) => root.log.push("signal " + loadedItem.tag) }
        }
    }

    function test_unloadedItemGetsNothingBeforeItsDeletion() {
        var base = first.count
        itemLoader.active = true
        compare(first.count, base + 2)
        first.notify(1)
        compare(log.slice().sort(), ["function item", "signal item"])
        log = []
        itemLoader.active = false
        compare(first.count, base) // unregistered now, not at the deferred deletion
        first.notify(2)             // in the same turn of the event loop
        compare(log, [])
    }
}
