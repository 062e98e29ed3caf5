// README.md, "The typed bus": what the application does with an event.
#include <chrono>
#include <cstdint>
// @snippet-includes

void reload(int serverId);
void warn(std::uint64_t missed);

void readmeBus()
{
// @snippet
}
