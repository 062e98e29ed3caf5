// SPDX-License-Identifier: MIT
// The front end of the qml-frontend pattern (docs/PATTERNS.md): a list of the
// back end's jobs, kept up to date by a RegistryHandler on `jobUpdates`; it
// asks the back end to cancel job 2 through `commands`, and quits once every
// job is over (main.cpp then checks `received` and `summary`).
pragma ComponentBehavior: Bound

import QtQuick
import Sigreg

Window {
    id: root

    required property Registry jobUpdates // C++ -> QML
    required property Registry commands   // QML -> C++

    property int received: 0
    property int over: 0
    property bool cancelRequested: false
    property string summary: ""

    width: 320
    height: 120
    visible: true
    title: "Jobs"

    ListModel { id: jobs }

    // [pattern:qml-frontend-handler]
    RegistryHandler {
        registry: root.jobUpdates
        onNotified: (update) => {
            root.received += 1
            const row = root.rowOf(update.job)
            if (row < 0)
                jobs.append({ job: update.job, status: update.status, progress: update.progress })
            else
                jobs.set(row, { status: update.status, progress: update.progress })

            // The user changes their mind about job 2 as soon as it starts.
            if (update.job === 2 && !root.cancelRequested) {
                root.cancelRequested = true
                root.commands.notify({ action: "cancel", job: 2 })
            }
            if (update.status !== "running" && ++root.over === 3) {
                root.summary = root.describe()
                Qt.quit()
            }
        }
    }
    // [/pattern:qml-frontend-handler]

    function rowOf(job) {
        for (let i = 0; i < jobs.count; ++i) {
            if (jobs.get(i).job === job)
                return i
        }
        return -1
    }

    function describe() {
        const parts = []
        for (let i = 0; i < jobs.count; ++i)
            parts.push(jobs.get(i).job + ":" + jobs.get(i).status)
        return parts.join(" ")
    }

    Column {
        anchors.fill: parent
        anchors.margins: 10
        spacing: 6
        Repeater {
            model: jobs
            delegate: Text {
                required property int job
                required property string status
                required property int progress
                text: "job " + job + "  " + status + "  " + progress + " %"
            }
        }
    }
}
