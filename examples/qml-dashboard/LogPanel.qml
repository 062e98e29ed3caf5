// SPDX-License-Identifier: MIT
// The log: every reading, newest first, with the alarm desk's mark, and
// notes from the dashboard. A click pauses it: its RegistryHandler's
// `enabled` goes false, which unregisters it.
pragma ComponentBehavior: Bound

import QtQuick
import Sigreg

Rectangle {
    id: log

    property Registry registry
    property var sensors: ({})
    property var theme: ({})
    property bool paused: false
    readonly property int maxLines: 11

    property int alarmLines: 0 // marked readings on show

    function add(line) {
        lines.insert(0, line)
        if (lines.count > maxLines)
            lines.remove(maxLines, lines.count - maxLines)
        let alarms = 0
        for (let i = 0; i < lines.count; ++i)
            alarms += lines.get(i).alarm ? 1 : 0
        alarmLines = alarms
    }
    function note(text) {
        add({ time: Date.now(), label: "", accent: theme.dim, text: text, alarm: false })
    }

    color: theme.panel
    radius: 8
    border.width: 1
    border.color: theme.border

    RegistryHandler {
        id: guard
        registry: log.registry
        priority: -10
        enabled: !log.paused
        onNotified: (event) => {
            const sensor = log.sensors[event.sensor]
            if (!sensor)
                return
            log.add({
                time: event.time,
                label: sensor.label,
                accent: sensor.color,
                text: event.value.toFixed(sensor.decimals) + " " + sensor.unit + "  · w" + event.worker,
                alarm: event.alarm === true
            })
        }
    }
    ListModel { id: lines }

    MouseArea {
        anchors.fill: parent
        onClicked: log.paused = !log.paused
    }

    Text {
        x: 14
        y: 12
        text: log.paused ? "Log (paused)" : "Log"
        color: log.theme.text
        font.pixelSize: 14
        font.bold: true
    }
    Text {
        anchors.right: parent.right
        anchors.rightMargin: 14
        y: 14
        text: guard.registered ? "#" + guard.handlerId + " · priority −10" : "handler not registered"
        color: log.theme.faint
        font.pixelSize: 11
    }

    Column {
        x: 14
        y: 40
        width: parent.width - 28
        Repeater {
            model: lines
            delegate: Item {
                id: line
                required property double time
                required property string label
                required property color accent
                required property string text
                required property bool alarm
                width: parent.width
                height: 20
                Rectangle {
                    visible: line.alarm
                    x: -6
                    width: parent.width + 12
                    height: parent.height
                    radius: 4
                    color: Qt.rgba(1, 0.33, 0.41, 0.14)
                }
                Text {
                    id: stamp
                    anchors.verticalCenter: parent.verticalCenter
                    text: Qt.formatTime(new Date(line.time), "hh:mm:ss.zzz")
                    color: log.theme.faint
                    font.family: "monospace"
                    font.pixelSize: 11
                }
                Text {
                    id: labelText
                    x: stamp.x + 92
                    anchors.verticalCenter: parent.verticalCenter
                    width: line.label ? 82 : 0
                    text: line.label
                    color: line.accent
                    font.pixelSize: 12
                }
                Text {
                    x: labelText.x + labelText.width
                    anchors.verticalCenter: parent.verticalCenter
                    text: line.text
                    color: line.alarm ? log.theme.alarm : line.label ? log.theme.text : log.theme.dim
                    font.pixelSize: 12
                    font.italic: !line.label
                }
            }
        }
    }
}
