// README.md, "Using it": declarations and statements in one block; the
// statements need a function around them.
#include <cstdio>
// @snippet-includes

void readmeRegistry()
{
// @snippet
}
