// docs/MIGRATION.md: the Qt "before" code continues the first one (Orders).
#include <QtCore/QDebug>
#include <QtCore/QObject>

#include <stdexcept>

class Orders : public QObject {
    Q_OBJECT
public:
    void place(int id, double amount) { Q_EMIT orderPlaced(id, amount); }
Q_SIGNALS:
    void orderPlaced(int id, double amount);
};

// @snippet
