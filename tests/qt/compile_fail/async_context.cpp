// Must not compile: async handlers (returning QFuture) take no context.
#include <sigreg/qt/qtregistry.h>

int main()
{
    sigreg::QtRegistry<int> reg;
    QObject ctx;
    reg.add(&ctx, [](int) { return QtFuture::makeReadyFuture(); });
}
