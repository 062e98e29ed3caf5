// SPDX-License-Identifier: MIT
// Registry.notifyAsync(): handlers returning promises are awaited together.
import QtQuick
import QtTest
import Sigreg

TestCase {
    id: root
    name: "RegistryAsync"

    property var log: []
    property var failures: []

    Registry {
        id: events
        onHandlerFailed: (id, message, location) => root.failures.push({ id: id, message: message, location: location })
    }
    Component { id: handlerComponent; RegistryHandler { registry: events } }

    // A promise settled later, from the event loop.
    Component {
        id: timerComponent
        Timer { interval: 1; running: true; repeat: false }
    }
    function later(action) {
        return new Promise(function (resolve, reject) {
            var t = timerComponent.createObject(root)
            t.triggered.connect(function () { t.destroy(); try { resolve(action()) } catch (e) { reject(e) } })
        })
    }

    function init() { log = []; failures = [] }
    function cleanup() { events.clear() }

    function test_waitsForEveryPromise() {
        createTemporaryObject(handlerComponent, root, { priority: 2,
            handler: (e) => later(() => root.log.push("slow done")) })
        createTemporaryObject(handlerComponent, root, { priority: 1,
            handler: (e) => { root.log.push("sync " + e); } })
        createTemporaryObject(handlerComponent, root, { priority: 0,
            handler: (e) => later(() => later(() => root.log.push("slower done"))) })
        var done = false
        events.notifyAsync("go").then(() => { done = true; root.log.push("all done") })
        compare(log, ["sync go"], "every handler started in the call, in priority order; none finished")
        tryVerify(() => done)
        compare(log, ["sync go", "slow done", "slower done", "all done"])
        compare(failures, [])
    }

    function test_rejectionIsReportedAndNeverRejectsTheJoin() {
        var bad = createTemporaryObject(handlerComponent, root, {
            handler: (e) => later(() => { throw new Error("late " + e) }) })
        createTemporaryObject(handlerComponent, root, { priority: -1,
            handler: (e) => later(() => root.log.push("sibling")) })
        var outcome = ""
        var failedBefore = events.failureCount
        events.notifyAsync("x").then(() => outcome = "resolved", () => outcome = "rejected")
        tryVerify(() => outcome !== "")
        compare(outcome, "resolved")
        compare(log, ["sibling"])
        compare(failures.length, 1)
        compare(failures[0].id, bad.handlerId)
        compare(failures[0].message, "Error: late x")
        verify(/tst_async\.qml:\d+$/.test(failures[0].location), failures[0].location)
        compare(events.failureCount, failedBefore + 1)
    }

    function test_thenGetterThatThrowsIsAFailure() {
        // Awaiting such a value rejects, as Promise.resolve() does; a plain
        // object returned beside it is no failure.
        var bad = createTemporaryObject(handlerComponent, root, { priority: 1,
            handler: (e) => ({ get then() { throw new Error("then getter " + e) } }) })
        createTemporaryObject(handlerComponent, root, { handler: (e) => ({ plain: e }) })
        var outcome = ""
        events.notifyAsync("y").then(() => outcome = "resolved", () => outcome = "rejected")
        tryVerify(() => outcome !== "")
        compare(outcome, "resolved")
        compare(failures.length, 1)
        compare(failures[0].id, bad.handlerId)
        compare(failures[0].message, "Error: then getter y")
    }

    function test_rejectedWithNonError() {
        createTemporaryObject(handlerComponent, root, { handler: (e) => Promise.reject("plain reason") })
        var done = false
        events.notifyAsync(1).then(() => done = true)
        tryVerify(() => done)
        compare(failures.length, 1)
        compare(failures[0].message, "plain reason")
        compare(failures[0].location, "")
    }

    function test_throwBeforeReturningAPromise() {
        var thrower = createTemporaryObject(handlerComponent, root, { priority: 5,
            handler: (e) => { throw new TypeError("early") } })
        createTemporaryObject(handlerComponent, root, { handler: (e) => later(() => root.log.push("ran")) })
        var done = false
        events.notifyAsync(1).then(() => done = true)
        compare(failures.length, 1, "reported at once, like notify()")
        compare(failures[0].id, thrower.handlerId)
        compare(failures[0].message, "TypeError: early")
        tryVerify(() => done)
        compare(log, ["ran"])
    }

    // Qt 6.4's engine has no async/await: a handler returns a promise chain.
    function test_promiseChainHandler() {
        createTemporaryObject(handlerComponent, root, {
            handler: (e) => later(() => e * 2).then((v) => root.log.push("chained " + v)) })
        var done = false
        events.notifyAsync(7).then(() => done = true)
        tryVerify(() => done)
        compare(log, ["chained 14"])
    }

    // A thenable that is not a native Promise is awaited too.
    function test_customThenable() {
        var settle
        createTemporaryObject(handlerComponent, root, {
            handler: (e) => ({ then: function (ok, fail) { settle = ok } }) })
        var done = false
        events.notifyAsync(1).then(() => done = true)
        tryVerify(() => settle !== undefined, 5000, "the join subscribed to the thenable")
        // Best effort: a join that did not wait would settle within these
        // event-loop turns; one that waits must not settle before settle().
        wait(20)
        verify(!done, "waits for the thenable")
        settle()
        tryVerify(() => done)
    }

    function test_withoutHandlersResolves() {
        var done = false
        events.notifyAsync({}).then(() => done = true)
        tryVerify(() => done)
    }

    function test_onNotifiedHandlersRunButAreNotAwaited() {
        ignoreWarning(/RegistryHandler has no onNotified handler/) // connected below, after completion
        var h = createTemporaryObject(handlerComponent, root, {})
        // What a slot of notified() returns is not awaited: this promise
        // never settles, so a join that awaited it would never settle either.
        h.notified.connect((e) => { root.log.push("signal " + e); return new Promise(() => {}) })
        var done = false
        events.notifyAsync(3).then(() => done = true)
        compare(log, ["signal 3"])
        tryVerify(() => done)
    }

    Registry {
        id: other
        onHandlerFailed: (id, message, location) => root.log.push("other failed: " + message)
    }

    function test_nestedPlainNotifyOfAnotherRegistryIsNotJoined() {
        // A handler of `events` notifies `other` (fire and forget); the
        // promise of other's handler belongs to nobody's join: events'
        // notifyAsync() neither waits for it nor reports its rejection.
        var settleOther = null
        var otherPromise = null
        createTemporaryObject(handlerComponent, root, { handler: (e) => { other.notify(e) } })
        var otherHandler = createTemporaryObject(handlerComponent, root, { registry: other,
            handler: (e) => (otherPromise = new Promise((resolve, reject) => settleOther = reject)) })
        var failedBefore = events.failureCount
        var done = false
        events.notifyAsync(1).then(() => done = true)
        tryVerify(() => done, 5000, "events' join waited for a promise of another registry's plain notify()")
        verify(settleOther !== null)
        // Reactions to a promise run in the order they were attached: once
        // ours has run, any a join attached before it has run too.
        var settled = false
        otherPromise.then(null, () => settled = true)
        settleOther(new Error("other's late failure"))
        tryVerify(() => settled)
        compare(failures, [])
        compare(events.failureCount, failedBefore)
        other.clear()
    }

    function test_rejectionOfAHandlerThatUnregisteredItselfKeepsItsId() {
        var h
        h = createTemporaryObject(handlerComponent, root, {
            handler: (e) => { h.enabled = false; return Promise.reject(new Error("late")) } })
        var id = h.handlerId
        var done = false
        events.notifyAsync(1).then(() => done = true)
        tryVerify(() => done)
        compare(failures.length, 1)
        compare(failures[0].id, id)
    }

    function test_rejectionUnderPlainNotifyIsReported() {
        // notify() awaits no promise, but a handler's rejection is still a
        // failure (events from C++ only ever come through notify()).
        var late = createTemporaryObject(handlerComponent, root, { priority: 1,
            handler: (e) => later(() => { throw new Error("late " + e) }) })
        var atOnce = createTemporaryObject(handlerComponent, root, {
            handler: (e) => Promise.reject("at once " + e) })
        createTemporaryObject(handlerComponent, root, { priority: -1,
            handler: (e) => later(() => root.log.push("fulfilled " + e)) })
        createTemporaryObject(handlerComponent, root, { priority: -2, handler: (e) => ({ plain: e }) })
        var failedBefore = events.failureCount
        events.notify("n")
        tryVerify(() => root.failures.length === 2 && root.log.length === 1)
        compare(failures[0].id, atOnce.handlerId)
        compare(failures[0].message, "at once n")
        compare(failures[1].id, late.handlerId)
        compare(failures[1].message, "Error: late n")
        verify(/tst_async\.qml:\d+$/.test(failures[1].location), failures[1].location)
        compare(events.failureCount, failedBefore + 2)
        compare(log, ["fulfilled n"])
        wait(10)
        compare(failures.length, 2, "a fulfilled promise or a plain object is no failure")
    }

    function test_notifyAsyncWithoutArgumentWarns() {
        ignoreWarning(new RegExp("tst_async\\.qml:\\d+:\\d+: QML Registry: Registry\\.notifyAsync\\(\\) needs an event argument"))
        var done = false
        events.notifyAsync().then(() => done = true)
        tryVerify(() => done, 1000, "still a promise, resolved")
    }
}
