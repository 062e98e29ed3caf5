// Must not compile: the handler cannot be called with the event.
#include <sigreg/qt/qtregistry.h>

#include <string>

int main()
{
    sigreg::QtRegistry<int> reg;
    reg.add([](const std::string &) {});
}
