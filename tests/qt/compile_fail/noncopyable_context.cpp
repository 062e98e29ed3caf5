// Must not compile: a handler with a context may be marshalled, which needs a
// copy of the event, and this event cannot be copied.
#include <sigreg/qt/qtregistry.h>

#include <memory>

struct MoveOnly {
    std::unique_ptr<int> p;
};

int main()
{
    sigreg::QtRegistry<MoveOnly> reg;
    QObject ctx;
    reg.add(&ctx, [](const MoveOnly &) {});
}
