// docs/MIGRATION.md: blocks that use the OrderPlaced event of the first "after" block.
#include <sigreg/qt/qtregistry.h>

struct OrderPlaced {
    int id;
    double amount;
};

// @snippet
