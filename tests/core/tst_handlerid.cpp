// SPDX-License-Identifier: MIT
// Qt Test suite: sigreg::HandlerId and sigreg::HandlerFailure.
#include <sigreg/handler_id.h>
#include <sigreg/registry.h>

#include <QtTest/QTest>

#include <cstdint>
#include <stdexcept>
#include <type_traits>
#include <unordered_set>

// Ids are passed by value everywhere and stored in containers by users.
static_assert(std::is_trivially_copyable_v<sigreg::HandlerId>);
static_assert(sizeof(sigreg::HandlerId) == sizeof(std::uint64_t));
static_assert(std::is_nothrow_default_constructible_v<sigreg::HandlerId>);
// An id is not implicitly made from an integer (a stray int must not remove a handler).
static_assert(!std::is_convertible_v<std::uint64_t, sigreg::HandlerId>);

class tst_HandlerId : public QObject {
    Q_OBJECT
private Q_SLOTS:
    void defaultIsInvalid();
    void comparisons_data();
    void comparisons();
    void hashDistinguishesIds();
    void idsFromOneRegistryAreDistinctAndIncreasing();
    void failureMessage_data();
    void failureMessage();
};

void tst_HandlerId::defaultIsInvalid()
{
    constexpr sigreg::HandlerId none;
    static_assert(!none.isValid());
    QCOMPARE(none.value(), std::uint64_t(0));
    QVERIFY(sigreg::HandlerId(1).isValid());
}

void tst_HandlerId::comparisons_data()
{
    QTest::addColumn<quint64>("a");
    QTest::addColumn<quint64>("b");
    QTest::newRow("equal") << quint64(7) << quint64(7);
    QTest::newRow("less") << quint64(3) << quint64(9);
    QTest::newRow("greater") << quint64(10) << quint64(2);
    QTest::newRow("extremes") << quint64(1) << quint64(UINT64_MAX);
}

void tst_HandlerId::comparisons()
{
    QFETCH(quint64, a);
    QFETCH(quint64, b);
    const sigreg::HandlerId x(a), y(b);
    // Every operator must agree with the underlying values.
    QCOMPARE(x == y, a == b);
    QCOMPARE(x != y, a != b);
    QCOMPARE(x < y, a < b);
    QCOMPARE(x > y, a > b);
    QCOMPARE(x <= y, a <= b);
    QCOMPARE(x >= y, a >= b);
}

void tst_HandlerId::hashDistinguishesIds()
{
    std::unordered_set<sigreg::HandlerId> set;
    for (std::uint64_t v = 1; v <= 1000; ++v)
        set.insert(sigreg::HandlerId(v));
    set.insert(sigreg::HandlerId(500)); // duplicate
    QCOMPARE(set.size(), std::size_t(1000));
    QVERIFY(set.count(sigreg::HandlerId(1000)) == 1);
    QVERIFY(set.count(sigreg::HandlerId(1001)) == 0);
    // The set's size depends on == only; the hash itself: equal ids hash
    // alike, and these ids spread over (nearly) as many hashes as ids.
    const std::hash<sigreg::HandlerId> hash;
    QCOMPARE(hash(sigreg::HandlerId(42)), hash(sigreg::HandlerId(42)));
    std::unordered_set<std::size_t> hashes;
    for (std::uint64_t v = 1; v <= 1000; ++v)
        hashes.insert(hash(sigreg::HandlerId(v)));
    QVERIFY2(hashes.size() >= 990, qPrintable(QStringLiteral("%1 distinct hashes").arg(hashes.size())));
}

void tst_HandlerId::idsFromOneRegistryAreDistinctAndIncreasing()
{
    sigreg::Registry<int> registry;
    sigreg::HandlerId previous;
    for (int i = 0; i < 100; ++i) {
        const sigreg::HandlerId id = registry.add([](const int &) {});
        QVERIFY(id.isValid());
        QVERIFY(id > previous);
        previous = id;
        if (i % 3 == 0)
            QVERIFY(registry.remove(id));
    }
}

void tst_HandlerId::failureMessage_data()
{
    QTest::addColumn<bool>("standard");
    QTest::newRow("std::exception") << true;
    QTest::newRow("other exception") << false;
}

void tst_HandlerId::failureMessage()
{
    QFETCH(bool, standard);
    sigreg::Registry<int> registry;
    std::string message;
    bool hadWhat = false;
    sigreg::HandlerId reported;
    registry.setErrorHandler([&](const sigreg::HandlerFailure &f) {
        message = std::string(f.message());
        hadWhat = f.what != nullptr;
        reported = f.handler;
    });
    const sigreg::HandlerId id = registry.add([standard](const int &) {
        if (standard)
            throw std::out_of_range("index 12 out of range");
        throw 12;
    });
    registry.notify(0);
    QCOMPARE(reported, id);
    QCOMPARE(hadWhat, standard);
    if (standard)
        QCOMPARE(message, std::string("index 12 out of range"));
    else
        QVERIFY(!message.empty()); // a fixed description, never an empty or dangling view
}

QTEST_GUILESS_MAIN(tst_HandlerId)
#include "tst_handlerid.moc"
