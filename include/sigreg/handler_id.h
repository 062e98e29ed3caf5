// SPDX-License-Identifier: MIT
// Sigreg — handler identifiers and failure reports.
#pragma once

/// @file
/// sigreg::HandlerId, which names one handler of one registry, and
/// sigreg::HandlerFailure, what an error handler receives when a handler
/// throws. Part of Sigreg::Core (no Qt).

/// @namespace sigreg
/// Sigreg's public API. Implementation details live in nested namespaces
/// (`detail`, `qtdetail`, `qmldetail`) that are not part of it and may change
/// at any time.

#include <cstdint>
#include <exception>
#include <functional>
#include <string_view>

namespace sigreg {

/// Identifies one registered handler inside one registry.
///
/// Ids come from a per-registry 64-bit counter that starts at 1 and is never
/// rewound, not even by `clear()`: an id is never reused, so a stale id can never
/// remove somebody else's handler. Ids of different registries are unrelated.
/// A default-constructed id is invalid (`isValid() == false`).
class HandlerId {
public:
    /// An invalid id (value 0).
    constexpr HandlerId() noexcept = default;
    /// The id whose value() is `value` (0: invalid). Ids are made by
    /// registries; this is for ids that travelled as integers (QML, logs).
    constexpr explicit HandlerId(std::uint64_t value) noexcept : m_value(value) {}

    /// The id as an integer: unique within its registry, 0 for an invalid id.
    [[nodiscard]] constexpr std::uint64_t value() const noexcept { return m_value; }
    /// True unless default-constructed (or made from 0).
    [[nodiscard]] constexpr bool isValid() const noexcept { return m_value != 0; }

    // Spelled out rather than `<=>`: Qt 6.4's moc cannot parse <compare>,
    // and Qt users include this header in moc-processed files.
    friend constexpr bool operator==(HandlerId a, HandlerId b) noexcept { return a.m_value == b.m_value; }
    friend constexpr bool operator!=(HandlerId a, HandlerId b) noexcept { return a.m_value != b.m_value; }
    friend constexpr bool operator<(HandlerId a, HandlerId b) noexcept { return a.m_value < b.m_value; }
    friend constexpr bool operator>(HandlerId a, HandlerId b) noexcept { return a.m_value > b.m_value; }
    friend constexpr bool operator<=(HandlerId a, HandlerId b) noexcept { return a.m_value <= b.m_value; }
    friend constexpr bool operator>=(HandlerId a, HandlerId b) noexcept { return a.m_value >= b.m_value; }

private:
    std::uint64_t m_value = 0;
};

/// What an error handler receives when a handler throws.
///
/// Passed by reference for the duration of the error-handler call only.
struct HandlerFailure {
    /// The handler that threw.
    HandlerId handler;
    /// The exception, as caught; never null.
    std::exception_ptr exception;
    /// `what()` of the exception when it derives from `std::exception`, else null.
    const char *what = nullptr;

    /// `what()` when available, otherwise a fixed description.
    [[nodiscard]] std::string_view message() const noexcept
    {
        return what ? std::string_view(what)
                    : std::string_view("unknown exception (not derived from std::exception)");
    }
};

} // namespace sigreg

template <>
struct std::hash<sigreg::HandlerId> {
    std::size_t operator()(sigreg::HandlerId id) const noexcept
    {
        return std::hash<std::uint64_t>{}(id.value());
    }
};
