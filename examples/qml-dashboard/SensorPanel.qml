// SPDX-License-Identifier: MIT
// One sensor: its latest value, the last readings as bars, counts. Its
// RegistryHandler is registered while the panel exists, and sees every
// reading: it keeps those of its own sensor.
pragma ComponentBehavior: Bound

import QtQuick
import Sigreg

Rectangle {
    id: panel

    required property string name // the model's role
    property Registry registry
    property var meta: ({})
    property var theme: ({})

    property int count: 0
    property int alarms: 0
    property real latest: 0
    property bool alarmed: false // the latest reading was marked by the alarm desk
    property int worker: 0
    readonly property real handlerId: guard.handlerId
    readonly property int historySize: 36

    function yOf(value) {
        const f = (meta.max - value) / (meta.max - meta.min)
        return Math.max(0, Math.min(1, f)) * chart.height
    }

    color: theme.panel
    radius: 8
    border.width: alarmed ? 2 : 1
    border.color: alarmed ? theme.alarm : theme.border

    RegistryHandler {
        id: guard
        registry: panel.registry
        priority: 0
        onNotified: (event) => {
            if (event.sensor !== panel.name)
                return
            const marked = event.alarm === true
            panel.count += 1
            if (marked)
                panel.alarms += 1
            panel.latest = event.value
            panel.alarmed = marked
            panel.worker = event.worker
            samples.append({ value: event.value, alarm: marked })
            if (samples.count > panel.historySize)
                samples.remove(0, samples.count - panel.historySize)
        }
    }
    ListModel { id: samples }

    Row {
        x: 14
        y: 12
        spacing: 8
        Rectangle {
            anchors.verticalCenter: parent.verticalCenter
            width: 10
            height: 10
            radius: 5
            color: panel.meta.color
        }
        Text {
            text: panel.meta.label
            color: panel.theme.text
            font.pixelSize: 14
            font.bold: true
        }
    }
    Text {
        anchors.right: parent.right
        anchors.rightMargin: 14
        y: 14
        text: "#" + panel.handlerId + " · priority 0"
        color: panel.theme.faint
        font.pixelSize: 11
    }

    Text {
        id: valueText
        x: 14
        y: 34
        text: panel.count ? panel.latest.toFixed(panel.meta.decimals) : "–"
        color: panel.alarmed ? panel.theme.alarm : panel.theme.text
        font.pixelSize: 34
        font.bold: true
    }
    Text {
        anchors.left: valueText.right
        anchors.leftMargin: 6
        anchors.baseline: valueText.baseline
        text: panel.meta.unit
        color: panel.theme.dim
        font.pixelSize: 15
    }
    Rectangle {
        visible: panel.alarmed
        anchors.right: parent.right
        anchors.rightMargin: 14
        anchors.verticalCenter: valueText.verticalCenter
        width: badge.implicitWidth + 14
        height: 20
        radius: 4
        color: panel.theme.alarm
        Text {
            id: badge
            anchors.centerIn: parent
            text: "ALARM"
            color: "white"
            font.pixelSize: 11
            font.bold: true
        }
    }

    Item {
        id: chart
        x: 14
        y: 90
        width: parent.width - 28
        height: 70

        Rectangle {
            id: limitLine
            y: panel.yOf(panel.meta.limit)
            width: parent.width
            height: 1
            color: panel.theme.alarm
            opacity: 0.55
        }
        Text {
            anchors.right: parent.right
            anchors.bottom: limitLine.top
            anchors.bottomMargin: 2
            text: "limit " + panel.meta.limit
            color: panel.theme.alarm
            font.pixelSize: 10
        }
        Row {
            height: parent.height
            spacing: 2
            Repeater {
                model: samples
                delegate: Rectangle {
                    required property real value
                    required property bool alarm
                    y: chart.height - height
                    width: (chart.width - (panel.historySize - 1) * 2) / panel.historySize
                    height: Math.max(2, chart.height - panel.yOf(value))
                    radius: 1
                    color: alarm ? panel.theme.alarm : panel.meta.color
                    opacity: alarm ? 1 : 0.7
                }
            }
        }
    }

    Text {
        x: 14
        anchors.bottom: parent.bottom
        anchors.bottomMargin: 12
        text: panel.count + " readings · " + panel.alarms + (panel.alarms === 1 ? " alarm" : " alarms")
              + (panel.worker ? " · from worker " + panel.worker : "")
        color: panel.theme.dim
        font.pixelSize: 11
    }
}
