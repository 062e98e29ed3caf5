// SPDX-License-Identifier: MIT
// The alarm desk: the first handler to see each reading (priority 100). A
// reading above its sensor's limit is marked, for the handlers after it.
pragma ComponentBehavior: Bound

import QtQuick
import Sigreg

Rectangle {
    id: desk

    property Registry registry
    property var sensors: ({})
    property var theme: ({})
    readonly property int maxAlarms: 3

    signal alarm(var event)

    color: theme.panel
    radius: 8
    border.width: 1
    border.color: theme.border

    RegistryHandler {
        id: guard
        registry: desk.registry
        priority: 100
        onNotified: (event) => {
            const sensor = desk.sensors[event.sensor]
            if (!sensor || event.value <= sensor.limit)
                return
            event.alarm = true // the handlers after this one see the same event object
            recent.insert(0, {
                time: event.time,
                label: sensor.label,
                accent: sensor.color,
                text: event.value.toFixed(sensor.decimals) + " " + sensor.unit + "  > " + sensor.limit
            })
            if (recent.count > desk.maxAlarms)
                recent.remove(desk.maxAlarms, recent.count - desk.maxAlarms)
            desk.alarm(event)
        }
    }
    ListModel { id: recent }

    Text {
        x: 14
        y: 12
        text: "Alarm desk"
        color: desk.theme.text
        font.pixelSize: 14
        font.bold: true
    }
    Text {
        anchors.right: parent.right
        anchors.rightMargin: 14
        y: 14
        text: "#" + guard.handlerId + " · priority 100"
        color: desk.theme.faint
        font.pixelSize: 11
    }

    Text {
        visible: recent.count === 0
        x: 14
        y: 44
        text: "no reading above its limit yet"
        color: desk.theme.dim
        font.pixelSize: 12
    }
    Column {
        x: 14
        y: 42
        width: parent.width - 28
        spacing: 6
        Repeater {
            model: recent
            delegate: Rectangle {
                id: entry
                required property double time
                required property string label
                required property color accent
                required property string text
                width: parent.width
                height: 26
                radius: 4
                color: Qt.rgba(1, 0.33, 0.41, 0.12)
                Row {
                    x: 8
                    anchors.verticalCenter: parent.verticalCenter
                    spacing: 10
                    Text {
                        text: Qt.formatTime(new Date(entry.time), "hh:mm:ss")
                        color: desk.theme.dim
                        font.family: "monospace"
                        font.pixelSize: 11
                    }
                    Text {
                        width: 82
                        text: entry.label
                        color: entry.accent
                        font.pixelSize: 12
                        font.bold: true
                    }
                    Text {
                        text: entry.text
                        color: desk.theme.alarm
                        font.pixelSize: 12
                    }
                }
            }
        }
    }
}
