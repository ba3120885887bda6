#include "util/yaml_reader.h"

#include <string>

#include <gtest/gtest.h>

namespace bastion::yaml {
namespace {

struct LoadCase {
  const char* name;
  const char* text;
  const char* error;  // "" = loads
};

// Each case returns promptly: yaml-cpp's LoadAll never returns on a stray
// ',' at the top level (it yields empty documents forever), so Load must not
// rely on it.
const LoadCase kLoadCases[] = {
    {"one document", "version: 1\n", ""},
    {"explicit start", "---\nversion: 1\n", ""},
    {"empty", "", "t.yaml:1:1: empty document (expected a mapping)"},
    {"two documents", "version: 1\n---\nversion: 1\n",
     "t.yaml:3:1: more than one YAML document (remove the extra '---')"},
    {"three documents", "a: 1\n---\nb: 2\n---\nc: 3\n",
     "t.yaml:3:1: more than one YAML document (remove the extra '---')"},
    {"stray comma", ",", "t.yaml:1:1: malformed YAML: unexpected ','"},
    {"stray comma after a document", "[version]\n,\n",
     "t.yaml:2:1: malformed YAML: unexpected ','"},
    {"stray comma after indentation", "   ,", "t.yaml:1:4: malformed YAML: unexpected ','"},
};

TEST(YamlReader, LoadsExactlyOneDocumentOrNamesTheProblem) {
  const Reader reader("t.yaml");
  for (const LoadCase& c : kLoadCases) {
    Result<Field> f = reader.Load(c.text, "a mapping");
    if (std::string(c.error).empty()) {
      EXPECT_TRUE(f.ok()) << c.name << ": " << f.status().ToString();
    } else {
      ASSERT_FALSE(f.ok()) << c.name;
      EXPECT_EQ(f.status().message(), c.error) << c.name;
    }
  }
}

// The bounded loader every other loader (bundle data, pricing, policy test
// cases) goes through stops on the same input.
TEST(YamlReader, TheBoundedLoaderStopsWhereTheParserStalls) {
  for (const char* text : {",", "[version]\n,\n", "   ,", "a: 1\n---\n,"}) {
    Result<YAML::Node> doc = LoadDocument(text, "d.yaml");
    ASSERT_FALSE(doc.ok()) << text;
    EXPECT_NE(doc.status().message().find("malformed YAML"), std::string::npos)
        << doc.status().message();
    EXPECT_EQ(doc.status().message().rfind("d.yaml:", 0), 0u) << doc.status().message();
  }
}

}  // namespace
}  // namespace bastion::yaml
