// SPDX-License-Identifier: MIT
// tst_record_plugin: notifies a host's registry from its own code, and shows
// its own copy of the thread's record pointer (detail::tl_moduleRecord).
#include <sigreg/registry.h>

#define PLUGIN_EXPORT extern "C" __attribute__((visibility("default")))

PLUGIN_EXPORT void plugin_notify(sigreg::Registry<int> *registry, int value)
{
    registry->notify(value);
}

/// This module's copy on the calling thread: its address and its value.
PLUGIN_EXPORT const void *plugin_copy_address()
{
#if SIGREG_MODULE_RECORDS
    return &sigreg::detail::tl_moduleRecord;
#else
    return nullptr;
#endif
}

PLUGIN_EXPORT const void *plugin_copy_value()
{
    return sigreg::detail::moduleRecord();
}
