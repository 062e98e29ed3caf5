// README.md, "With Qt": OrderPlaced from "Using it", two context objects.
#include <QtConcurrent/QtConcurrent>
#include <QtCore/QObject>
// @snippet-includes

struct OrderPlaced {
    int id;
    double amount;
};

void readmeQt(QObject *worker, QObject *window)
{
// @snippet
}
