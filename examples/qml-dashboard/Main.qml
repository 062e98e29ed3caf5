// SPDX-License-Identifier: MIT
// The dashboard. Everything that reacts to readings is a RegistryHandler on
// `readings`, the Registry main.cpp feeds from its C++ QtRegistry<Reading>.
// Per reading, in the QML engine's thread, highest priority first:
//    100  the alarm desk: compares with the sensor's limit, marks the event
//         (event.alarm: all handlers of one reading share one JS object)
//      0  one handler per sensor panel (Repeater delegates, created and
//         destroyed with the model), each keeping only its sensor's readings
//    -10  the log (a click pauses it: `enabled: false` unregisters it)
//   -100  bookkeeping: counts
pragma ComponentBehavior: Bound

import QtQuick
import Sigreg

Window {
    id: dashboard

    required property Registry readings

    property int received: 0
    property int alarmCount: 0
    property int panelChanges: 0
    // Polled by main.cpp's --screenshot mode: readings, an alarm and a panel
    // change have been seen, and every panel shows a few readings.
    property bool settled: false

    // What QML knows about the sensors (C++ sends name and value only).
    readonly property var sensors: ({
        temperature: { label: "Temperature", unit: "°C", limit: 78, min: 40, max: 100, decimals: 1, color: "#ff9f43" },
        pressure: { label: "Pressure", unit: "kPa", limit: 250, min: 150, max: 300, decimals: 0, color: "#54a0ff" },
        humidity: { label: "Humidity", unit: "%", limit: 66, min: 20, max: 90, decimals: 1, color: "#1dd1a1" },
        vibration: { label: "Vibration", unit: "mm/s", limit: 6.5, min: 0, max: 10, decimals: 2, color: "#c56cf0" }
    })

    readonly property var theme: ({
        background: "#0e1116", panel: "#171c24", border: "#262e3a", text: "#e6edf3", dim: "#8b98a5",
        faint: "#4a5563", alarm: "#ff5468"
    })

    width: 900
    height: 560
    visible: true
    title: "Sigreg QML dashboard"
    color: theme.background

    // Bookkeeping: the last handler to see each reading.
    RegistryHandler {
        registry: dashboard.readings
        priority: -100
        onNotified: (event) => {
            dashboard.received += 1
            if (!dashboard.settled)
                dashboard.settled = dashboard.received >= 60 && dashboard.alarmCount >= 2
                        && dashboard.panelChanges >= 1 && dashboard.panelsHaveReadings(4) && log.alarmLines > 0
        }
    }

    function panelsHaveReadings(n) {
        for (let i = 0; i < panels.count; ++i) {
            const panel = panels.itemAt(i)
            if (!panel || panel.count < n)
                return false
        }
        return true
    }

    // The panels: the model changes, the delegates (and their handlers) follow.
    ListModel {
        id: panelModel
        ListElement { name: "temperature" }
        ListElement { name: "pressure" }
        ListElement { name: "humidity" }
    }
    Timer {
        interval: 800
        running: true
        repeat: true
        onTriggered: {
            interval = 4000
            for (let i = 0; i < panelModel.count; ++i) {
                if (panelModel.get(i).name === "vibration") {
                    panelModel.remove(i)
                    log.note("− vibration panel: its handler is gone")
                    dashboard.panelChanges += 1
                    return
                }
            }
            panelModel.append({ name: "vibration" }) // the Repeater creates its delegate now
            const added = panels.itemAt(panels.count - 1)
            log.note("+ vibration panel: handler #" + (added ? added.handlerId : "?"))
            dashboard.panelChanges += 1
        }
    }

    // Header
    Item {
        id: header
        x: 20
        width: parent.width - 40
        height: 76

        Column {
            anchors.verticalCenter: parent.verticalCenter
            spacing: 4
            Text {
                text: "Sigreg · live readings"
                color: dashboard.theme.text
                font.pixelSize: 22
                font.bold: true
            }
            Text {
                text: "3 worker threads → QtRegistry<Reading> → exposeToQml() → Registry → RegistryHandler"
                color: dashboard.theme.dim
                font.pixelSize: 12
            }
        }
        Row {
            anchors.right: parent.right
            anchors.verticalCenter: parent.verticalCenter
            spacing: 22
            Stat { label: "readings"; value: dashboard.received }
            Stat { label: "alarms"; value: dashboard.alarmCount; valueColor: dashboard.theme.alarm }
            Stat { label: "handlers"; value: dashboard.readings.count }
            Stat { label: "panels"; value: panels.count }
        }
    }

    component Stat: Column {
        property string label
        property int value
        property color valueColor: "#e6edf3"
        property color labelColor: "#8b98a5"
        Text {
            anchors.right: parent.right
            text: parent.value
            color: parent.valueColor
            font.pixelSize: 20
            font.bold: true
        }
        Text {
            anchors.right: parent.right
            text: parent.label
            color: parent.labelColor
            font.pixelSize: 11
        }
    }

    Grid {
        id: grid
        x: 20
        y: header.height + 8
        columns: 2
        spacing: 12

        Repeater {
            id: panels
            model: panelModel
            delegate: SensorPanel {
                width: 262
                height: 206
                registry: dashboard.readings
                meta: dashboard.sensors[name]
                theme: dashboard.theme
            }
        }
    }

    Column {
        x: grid.x + 2 * 262 + 12 + 16
        y: grid.y
        width: dashboard.width - x - 20
        spacing: 12

        AlarmPanel {
            width: parent.width
            height: 150
            registry: dashboard.readings
            sensors: dashboard.sensors
            theme: dashboard.theme
            onAlarm: dashboard.alarmCount += 1
        }
        LogPanel {
            id: log
            width: parent.width
            height: 2 * 206 + 12 - 150 - 12
            registry: dashboard.readings
            sensors: dashboard.sensors
            theme: dashboard.theme
        }
    }

    Text {
        x: 20
        anchors.bottom: parent.bottom
        anchors.bottomMargin: 14
        text: "#n: the panel's handler id.  A timer adds and removes the vibration panel (and its handler) "
              + "every 4 s.  Click the log to pause its handler."
        color: dashboard.theme.faint
        font.pixelSize: 11
    }
}
