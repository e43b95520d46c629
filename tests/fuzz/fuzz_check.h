// FUZZ_CHECK for the fuzz targets: when a property does not hold, it prints
// the condition and a message and aborts. libFuzzer then saves the input as
// a crash artifact, and the corpus replay tool fails its test.
#ifndef CRM_TESTS_FUZZ_FUZZ_CHECK_H_
#define CRM_TESTS_FUZZ_FUZZ_CHECK_H_

#include <cstdio>
#include <cstdlib>
#include <string>

#define FUZZ_CHECK(condition, message)                                                              \
  do {                                                                                              \
    if (!(condition)) {                                                                             \
      std::fprintf(stderr, "%s:%d: property violated: %s: %s\n", __FILE__, __LINE__, #condition, \
                   std::string(message).c_str());                                                   \
      std::abort();                                                                                 \
    }                                                                                               \
  } while (false)

#endif  // CRM_TESTS_FUZZ_FUZZ_CHECK_H_
