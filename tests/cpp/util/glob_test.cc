#include "bastion/glob.h"

#include <chrono>
#include <optional>
#include <random>
#include <string>
#include <string_view>

#include <gtest/gtest.h>

namespace bastion {
namespace {

// ---------------------------------------------------------------------------
// GlobMatch

struct GlobCase {
  const char* name;
  const char* pattern;
  const char* text;
  bool match;
};

const GlobCase kGlobCases[] = {
    // empty pattern and text
    {"empty matches empty", "", "", true},
    {"empty pattern rejects text", "", "a", false},
    {"literal rejects empty text", "a", "", false},
    {"star matches empty", "*", "", true},
    {"double star matches empty", "**", "", true},
    {"question needs a character", "?", "", false},
    // literals
    {"literal equal", "lookup_order", "lookup_order", true},
    {"literal is case-sensitive", "lookup_order", "Lookup_Order", false},
    {"literal must match whole text", "order", "order/1", false},
    {"literal prefix is not enough", "order/1", "order", false},
    // '*'
    {"star in one segment", "order/*", "order/42", true},
    {"star matches empty segment", "order/*", "order/", true},
    {"star stops at slash", "order/*", "order/42/items", false},
    {"star alone stops at slash", "*", "a/b", false},
    {"star between literals", "a*c", "abbbc", true},
    {"star between literals, no match", "a*c", "abbbd", false},
    {"star suffix", "*.txt", "notes.txt", true},
    {"star suffix across slash", "*.txt", "dir/notes.txt", false},
    {"two stars two segments", "*/*", "a/b", true},
    {"two stars need the slash", "*/*", "ab", false},
    {"star backtracks", "*ab", "aaab", true},
    {"star backtracks twice", "a*b*c", "aXbYbZc", true},
    {"trailing star", "search_*", "search_web", true},
    {"trailing star empty", "search_*", "search_", true},
    {"leading star", "*_readonly", "ops_readonly", true},
    // '**'
    {"double star crosses slashes", "order/**", "order/42/items/7", true},
    {"double star matches empty tail", "order/**", "order/", true},
    {"double star needs the literal slash", "order/**", "order", false},
    {"double star alone", "**", "a/b/c", true},
    {"double star in the middle", "a/**/z", "a/b/c/z", true},
    {"double star slashes are literal", "a/**/z", "a/z", false},
    {"double star one level", "a/**/z", "a/b/z", true},
    {"double star then star", "**/*.txt", "a/b/c.txt", true},
    {"double star then star, star cannot cross", "**/*.txt", "a/b.txt/c", false},
    {"double star prefix", "**.txt", "a/b/c.txt", true},
    {"triple star is double", "a/***", "a/b/c", true},
    {"double star falls back after star hits slash", "**a*b", "a/ab", true},
    {"double star then star then literal slash", "**x*/y", "x/x1/y", true},
    {"double star then star rejects", "**x*/y", "x/x1/z", false},
    {"two double stars", "**/mid/**", "a/b/mid/c/d", true},
    {"two double stars, no mid", "**/mid/**", "a/b/mud/c/d", false},
    {"star before double star", "*/**", "a/b/c", true},
    {"star before double star needs slash", "*/**", "abc", false},
    // '?'
    {"question one char", "order/?", "order/7", true},
    {"question exactly one", "order/?", "order/77", false},
    {"question not slash", "a?b", "a/b", false},
    {"question multibyte char", "caf?", "caf\xc3\xa9", true},
    {"question one multibyte char only", "?", "\xc3\xa9\xc3\xa9", false},
    {"question stray byte", "a?", "a\xff", true},
    {"star then question over multibyte", "*?", "\xe2\x82\xac", true},
    // classes
    {"class member", "[abc]", "b", true},
    {"class non-member", "[abc]", "d", false},
    {"class range", "v[0-9]", "v7", true},
    {"class range outside", "v[0-9]", "va", false},
    {"class negated", "[!x]", "y", true},
    {"class negated rejects member", "[!x]", "x", false},
    {"class caret negation", "[^x]", "x", false},
    {"class negated never matches slash", "a[!x]b", "a/b", false},
    {"class bracket first is literal", "[]a]", "]", true},
    {"class dash last is literal", "[a-]", "-", true},
    {"class dash first is literal", "[-a]", "-", true},
    {"class escaped bracket", "[\\]]", "]", true},
    {"class multibyte member", "[\xc3\xa9\xc3\xa8]", "\xc3\xa8", true},
    {"class multibyte range", "[\xc3\xa0-\xc3\xbf]", "\xc3\xa9", true},
    {"class needs one char", "[ab]", "ab", false},
    {"class then star", "[ab]*", "b-side", true},
    {"negated class matches multibyte whole", "[!a]", "\xc3\xa9", true},
    // escapes
    {"escaped star is literal", "a\\*b", "a*b", true},
    {"escaped star is not a wildcard", "a\\*b", "axb", false},
    {"escaped question", "what\\?", "what?", true},
    {"escaped bracket", "\\[x]", "[x]", true},
    {"escaped backslash", "a\\\\b", "a\\b", true},
    {"escaped ordinary char", "\\a", "a", true},
    // malformed patterns match nothing
    {"malformed: trailing backslash", "a\\", "a\\", false},
    {"malformed: unterminated class", "a[bc", "a[bc", false},
    {"malformed: reversed range", "[z-a]", "m", false},
    {"malformed: slash in class", "a[/]b", "a/b", false},
};

TEST(GlobMatch, Table) {
  for (const GlobCase& c : kGlobCases) {
    EXPECT_EQ(GlobMatch(c.pattern, c.text), c.match)
        << c.name << ": GlobMatch(\"" << c.pattern << "\", \"" << c.text << "\")";
  }
}

// A deliberately naive recursive matcher over the ASCII subset, to compare
// against on random inputs. Exponential, so only for short strings.
bool ReferenceMatch(std::string_view p, std::string_view t) {
  if (p.empty()) return t.empty();
  if (p.substr(0, 2) == "**") {
    size_t k = 0;
    while (k < p.size() && p[k] == '*') ++k;
    for (size_t i = 0; i <= t.size(); ++i) {
      if (ReferenceMatch(p.substr(k), t.substr(i))) return true;
    }
    return false;
  }
  if (p[0] == '*') {
    for (size_t i = 0; i <= t.size(); ++i) {
      if (ReferenceMatch(p.substr(1), t.substr(i))) return true;
      if (i < t.size() && t[i] == '/') break;
    }
    return false;
  }
  if (t.empty()) return false;
  if (p[0] == '?') return t[0] != '/' && ReferenceMatch(p.substr(1), t.substr(1));
  if (p[0] == '[') {
    const size_t close = p.find(']', 2);
    const bool negated = p[1] == '!';
    const std::string_view set = p.substr(negated ? 2 : 1, close - (negated ? 2 : 1));
    if (t[0] == '/' || (set.find(t[0]) != std::string_view::npos) == negated) return false;
    return ReferenceMatch(p.substr(close + 1), t.substr(1));
  }
  return p[0] == t[0] && ReferenceMatch(p.substr(1), t.substr(1));
}

TEST(GlobMatch, AgreesWithNaiveMatcherOnRandomInputs) {
  std::mt19937 rng(20240601);
  const char* atoms[] = {"a", "b", "/", "*", "**", "?", "[ab]", "[!a]", "a", "b", "/"};
  const char letters[] = "ab/";
  for (int i = 0; i < 200000; ++i) {
    std::string pattern, text;
    const int atoms_n = static_cast<int>(rng() % 10);
    const int text_n = static_cast<int>(rng() % 12);
    for (int k = 0; k < atoms_n; ++k) pattern += atoms[rng() % std::size(atoms)];
    for (int k = 0; k < text_n; ++k) text += letters[rng() % 3];
    ASSERT_EQ(GlobMatch(pattern, text), ReferenceMatch(pattern, text))
        << "case " << i << ": pattern \"" << pattern << "\", text \"" << text << "\"";
  }
}

TEST(GlobMatch, PathologicalPatternsFinishFast) {
  struct Case {
    const char* name;
    std::string pattern;
    std::string text;
    bool match;
  };
  const std::string as(100000, 'a');
  std::string segments;
  for (int i = 0; i < 20000; ++i) segments += "a/";
  std::string long_components;
  for (int i = 0; i < 2000; ++i) long_components += "a/" + std::string(30, 'a');
  const Case cases[] = {
      {"stars, no b", "a*a*a*a*a*b", as, false},
      {"stars, b at the end", "a*a*a*a*a*b", as + "b", true},
      {"double stars, no b", "**a**a**a**a**b", as, false},
      {"double star then star", "**a*b", as, false},
      {"double star then stars over segments", "**a*a*b", segments, false},
      {"double star then slash star", "**/a*/b", segments, false},
      {"star double star question", "*/**/?*b", segments, false},
      {"slash inside the double star part", "**a/*b", long_components, false},
      {"many question marks", std::string(200, '?') + "*b", as, false},
      {"alternating", "*a*b*a*b*a*b*a*b", std::string(50000, 'a') + std::string(50000, 'b'), false},
  };
  for (const Case& c : cases) {
    const auto start = std::chrono::steady_clock::now();
    EXPECT_EQ(GlobMatch(c.pattern, c.text), c.match) << c.name;
    const auto elapsed = std::chrono::steady_clock::now() - start;
    // Milliseconds in practice; the bound is loose for sanitizer builds.
    EXPECT_LT(elapsed, std::chrono::seconds(2)) << c.name;
  }
}

// ---------------------------------------------------------------------------
// ValidateGlob, IsGlobPattern

TEST(ValidateGlob, Table) {
  struct Case {
    const char* name;
    const char* pattern;
    const char* error;  // substring of the message; nullptr = valid
  } cases[] = {
      {"empty", "", nullptr},
      {"literal", "lookup_order", nullptr},
      {"all syntax", "a/**/b*[!x-z]?\\*", nullptr},
      {"bracket first literal", "[]]", nullptr},
      {"trailing backslash", "abc\\", "trailing '\\' escapes nothing at offset 3"},
      {"unterminated class", "order/[a-", "unterminated character class at offset 6"},
      {"unterminated after bracket", "[]", "unterminated character class at offset 0"},
      {"negated unterminated", "[!]", "unterminated character class"},
      {"escape at end of class", "[a\\", "unterminated character class"},
      {"reversed range", "x[z-a]", "character range is out of order at offset 2"},
      {"slash in class", "[a/]", "'/' inside [...] can never match at offset 2"},
  };
  for (const Case& c : cases) {
    const Status s = ValidateGlob(c.pattern);
    if (c.error == nullptr) {
      EXPECT_TRUE(s.ok()) << c.name << ": " << s.ToString();
    } else {
      EXPECT_TRUE(s.IsInvalidArgument()) << c.name;
      EXPECT_NE(s.message().find(c.error), std::string::npos)
          << c.name << ": got \"" << s.message() << "\", want \"" << c.error << "\"";
    }
  }
}

TEST(IsGlobPattern, Table) {
  EXPECT_FALSE(IsGlobPattern("lookup_order"));
  EXPECT_FALSE(IsGlobPattern("order/42"));
  EXPECT_FALSE(IsGlobPattern(""));
  EXPECT_TRUE(IsGlobPattern("search_*"));
  EXPECT_TRUE(IsGlobPattern("v?"));
  EXPECT_TRUE(IsGlobPattern("[ab]"));
  EXPECT_TRUE(IsGlobPattern("a\\-b"));
}

// ---------------------------------------------------------------------------
// DomainMatch, ValidateDomainPattern

TEST(DomainMatch, Table) {
  struct Case {
    const char* name;
    const char* pattern;
    const char* host;
    bool match;
  } cases[] = {
      {"exact", "example.com", "example.com", true},
      {"exact rejects subdomain", "example.com", "api.example.com", false},
      {"exact rejects other", "example.com", "example.org", false},
      {"wildcard one level", "*.example.com", "api.example.com", true},
      {"wildcard two levels", "*.example.com", "a.b.example.com", true},
      {"wildcard deep", "*.example.com", "x.y.z.w.example.com", true},
      {"wildcard rejects apex", "*.example.com", "example.com", false},
      {"wildcard needs a dot boundary", "*.example.com", "badexample.com", false},
      {"wildcard rejects suffix lookalike", "*.example.com", "example.com.evil.io", false},
      {"case-insensitive host", "example.com", "EXAMPLE.Com", true},
      {"case-insensitive pattern", "*.Example.COM", "api.example.com", true},
      {"trailing dot on host", "example.com", "example.com.", true},
      {"trailing dot on pattern", "example.com.", "example.com", true},
      {"trailing dot with wildcard", "*.example.com", "api.example.com.", true},
      {"trailing dot apex with wildcard", "*.example.com", "example.com.", false},
      {"only one trailing dot ignored", "example.com", "example.com..", false},
      {"star matches any", "*", "anything.at.all", true},
      {"star matches ip", "*", "10.0.0.1", true},
      {"star rejects empty host", "*", "", false},
      {"empty pattern", "", "example.com", false},
      {"empty host", "example.com", "", false},
      {"ipv4 exact", "10.0.0.1", "10.0.0.1", true},
      {"ipv6 bare vs bracketed", "::1", "[::1]", true},
      {"ipv6 bracketed vs bare", "[::1]", "::1", true},
      {"ipv6 case", "2001:DB8::1", "2001:db8::1", true},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(DomainMatch(c.pattern, c.host), c.match)
        << c.name << ": DomainMatch(\"" << c.pattern << "\", \"" << c.host << "\")";
  }
}

TEST(ValidateDomainPattern, Table) {
  struct Case {
    const char* name;
    const char* pattern;
    const char* error;  // substring; nullptr = valid
  } cases[] = {
      {"star", "*", nullptr},
      {"name", "api.partner.io", nullptr},
      {"wildcard", "*.example.com", nullptr},
      {"trailing dot", "example.com.", nullptr},
      {"underscore and dash", "my_host-1.example.com", nullptr},
      {"single label", "localhost", nullptr},
      {"ipv4", "192.168.0.1", nullptr},
      {"ipv6 bare", "2001:db8::1", nullptr},
      {"ipv6 bracketed", "[::1]", nullptr},
      {"empty", "", "empty domain pattern"},
      {"inner star", "api.*.com", "'*' is only allowed as a whole leading label"},
      {"double wildcard", "*.*.com", "'*' is only allowed"},
      {"star prefix without dot", "*example.com", "'*' is only allowed"},
      {"space", "ex ample.com", "character ' ' is not allowed"},
      {"slash", "example.com/x", "character '/' is not allowed"},
      {"empty label", "a..b", "empty label"},
      {"leading dot", ".example.com", "empty label"},
      {"wildcard before ip", "*.10.0.0.1", "cannot precede an IP address"},
      {"bad ipv6", "1:2:3", "malformed IPv6 literal"},
      {"bad bracket", "[::1", "malformed IPv6 literal"},
      {"long label", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.com",
       "longer than 63"},
  };
  for (const auto& c : cases) {
    const Status s = ValidateDomainPattern(c.pattern);
    if (c.error == nullptr) {
      EXPECT_TRUE(s.ok()) << c.name << ": " << s.ToString();
    } else {
      EXPECT_NE(s.message().find(c.error), std::string::npos)
          << c.name << ": got \"" << s.message() << "\", want \"" << c.error << "\"";
    }
  }
}

// ---------------------------------------------------------------------------
// HostOfUrl, NormalizeHost

TEST(HostOfUrl, Table) {
  struct Case {
    const char* name;
    const char* url;
    std::optional<std::string> host;
  } cases[] = {
      {"plain", "https://example.com/path", "example.com"},
      {"no path", "https://example.com", "example.com"},
      {"query right after host", "https://example.com?q=1", "example.com"},
      {"fragment right after host", "https://example.com#top", "example.com"},
      {"port", "http://api.partner.io:8080/v1", "api.partner.io"},
      {"empty port", "http://example.com:/", "example.com"},
      {"max port", "http://example.com:65535/", "example.com"},
      {"userinfo", "https://bob:secret@example.com/", "example.com"},
      {"userinfo with port", "https://bob@example.com:443/", "example.com"},
      {"last at sign wins", "https://a@b@evil.io/", "evil.io"},
      {"at sign in path is not userinfo", "https://example.com/@evil.io", "example.com"},
      {"uppercase", "HTTPS://API.Example.COM/X", "api.example.com"},
      {"trailing dot", "https://example.com./", "example.com"},
      {"ipv4", "http://10.0.0.1:80/", "10.0.0.1"},
      {"ipv6", "http://[2001:DB8::1]/", "2001:db8::1"},
      {"ipv6 with port", "http://[::1]:8080/x", "::1"},
      {"ipv6 with embedded ipv4", "http://[::ffff:10.0.0.1]/", "::ffff:10.0.0.1"},
      {"other scheme", "ftp+tls://files.example.com/a", "files.example.com"},
      {"underscore and tilde", "http://my_host~1.example.com/", "my_host~1.example.com"},
      // garbage
      {"empty", "", std::nullopt},
      {"no scheme", "example.com/path", std::nullopt},
      {"scheme-relative", "//example.com/", std::nullopt},
      {"scheme without slashes", "mailto:bob@example.com", std::nullopt},
      {"scheme starts with digit", "1http://example.com/", std::nullopt},
      {"empty host", "http:///path", std::nullopt},
      {"only userinfo", "http://bob@/", std::nullopt},
      {"file url", "file:///etc/passwd", std::nullopt},
      {"port not digits", "http://example.com:http/", std::nullopt},
      {"port too large", "http://example.com:65536/", std::nullopt},
      {"port too long", "http://example.com:000080/", std::nullopt},
      {"two ports", "http://example.com:80:81/", std::nullopt},
      {"space in host", "http://exa mple.com/", std::nullopt},
      {"space anywhere", "http://example.com/a b", std::nullopt},
      {"control char", "http://example.com\n.evil.io/", std::nullopt},
      {"tab", "http://example.com\t/", std::nullopt},
      {"backslash before path", "http://evil.io\\@example.com/", std::nullopt},
      {"percent encoding", "http://ex%61mple.com/", std::nullopt},
      {"unterminated ipv6", "http://[::1/", std::nullopt},
      {"bad ipv6", "http://[12345::1]/", std::nullopt},
      {"ipv6 zone", "http://[fe80::1%25eth0]/", std::nullopt},
      {"junk after ipv6", "http://[::1]x/", std::nullopt},
      {"empty label", "http://a..b/", std::nullopt},
      {"leading dot", "http://.example.com/", std::nullopt},
      {"only a dot", "http://./", std::nullopt},
      {"not a url", "not a url", std::nullopt},
      {"non-ascii host", "http://ex\xc3\xa4mple.com/", std::nullopt},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(HostOfUrl(c.url), c.host) << c.name << ": HostOfUrl(\"" << c.url << "\")";
  }
}

TEST(HostOfUrl, NormalizeHost) {
  EXPECT_EQ(NormalizeHost("API.Example.COM."), "api.example.com");
  EXPECT_EQ(NormalizeHost("[2001:DB8::1]"), "2001:db8::1");
  EXPECT_EQ(NormalizeHost("example.com"), "example.com");
  EXPECT_EQ(NormalizeHost(""), "");
  EXPECT_EQ(NormalizeHost("."), "");
}

}  // namespace
}  // namespace bastion
