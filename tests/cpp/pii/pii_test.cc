#include "bastion/pii.h"

#include <chrono>
#include <random>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>

namespace bastion {
namespace {

using K = PiiKind;

// One expected match: its kind and the exact text it covers. A case's spans are
// located left to right, each after the previous one, so a case reads like the
// text it tests and still pins exact offsets.
struct Want {
  PiiKind kind;
  std::string_view span;
};

struct Case {
  std::string_view name;
  std::string_view text;
  std::vector<Want> want;  // empty: nothing may match
};

std::string Describe(std::string_view text, const std::vector<PiiMatch>& matches) {
  if (matches.empty()) return " (none)";
  std::string out;
  for (const PiiMatch& m : matches) {
    const bool in_range = m.start <= m.end && m.end <= text.size();
    out += fmt::format(" {}[{},{})'{}'", PiiKindName(m.kind), m.start, m.end,
                       in_range ? text.substr(m.start, m.end - m.start) : "?");
  }
  return out;
}

std::vector<PiiMatch> Locate(const Case& c) {
  std::vector<PiiMatch> out;
  size_t pos = 0;
  for (const Want& w : c.want) {
    const size_t at = c.text.find(w.span, pos);
    if (at == std::string_view::npos) {
      ADD_FAILURE() << c.name << ": test bug, '" << w.span << "' is not in the text";
      break;
    }
    out.push_back({w.kind, at, at + w.span.size()});
    pos = at + w.span.size();
  }
  return out;
}

void ExpectCases(const std::vector<Case>& cases, PiiKinds kinds = kAllPii) {
  for (const Case& c : cases) {
    const std::vector<PiiMatch> want = Locate(c);
    const std::vector<PiiMatch> got = FindPii(c.text, kinds);
    EXPECT_TRUE(got == want) << c.name << "\n  text: " << c.text
                             << "\n  got: " << Describe(c.text, got)
                             << "\n  want:" << Describe(c.text, want);
  }
}

// Every match in range, of a requested kind, sorted and non-overlapping.
void ExpectWellFormed(std::string_view text, const std::vector<PiiMatch>& matches,
                      PiiKinds kinds, std::string_view what) {
  size_t prev_end = 0;
  for (const PiiMatch& m : matches) {
    ASSERT_LT(m.start, m.end) << what;
    ASSERT_LE(m.end, text.size()) << what;
    ASSERT_TRUE(HasPiiKind(kinds, m.kind)) << what << ": " << PiiKindName(m.kind);
    ASSERT_GE(m.start, prev_end) << what << ": overlap or disorder at " << m.start;
    prev_end = m.end;
  }
}

// --- names and kind sets ---

TEST(PiiKind, NamesRoundTrip) {
  const char* const names[] = {"email", "phone", "credit_card", "iban",    "us_ssn",
                               "kr_rrn", "ipv4", "ipv6",        "api_key", "secret"};
  for (int k = 0; k < kPiiKindCount; ++k) {
    const PiiKind kind = static_cast<PiiKind>(k);
    EXPECT_EQ(PiiKindName(kind), names[k]) << k;
    EXPECT_EQ(PiiKindFromName(names[k]), kind) << names[k];
  }
}

TEST(PiiKind, FromNameRejectsAnythingElse) {
  for (const char* name : {"", "EMAIL", "Email", "email ", "creditcard", "ssn", "ip", "unknown"}) {
    EXPECT_EQ(PiiKindFromName(name), std::nullopt) << "'" << name << "'";
  }
  EXPECT_EQ(PiiKindName(static_cast<PiiKind>(99)), "unknown");
}

TEST(PiiKind, BitsFormSets) {
  EXPECT_EQ(kAllPii, 0x3FFu);
  const PiiKinds some = PiiKindBit(K::kEmail) | PiiKindBit(K::kSecret);
  EXPECT_TRUE(HasPiiKind(some, K::kEmail));
  EXPECT_TRUE(HasPiiKind(some, K::kSecret));
  EXPECT_FALSE(HasPiiKind(some, K::kPhone));
  for (int k = 0; k < kPiiKindCount; ++k) {
    EXPECT_TRUE(HasPiiKind(kAllPii, static_cast<PiiKind>(k))) << k;
  }
}

TEST(Pii, HeaderExampleHolds) {
  const std::string_view text = "Card 4111 1111 1111 1111, mail ana@example.org";
  const std::vector<PiiMatch> found = FindPii(text);
  const std::vector<PiiMatch> want = {{K::kCreditCard, 5, 24}, {K::kEmail, 31, 46}};
  EXPECT_TRUE(found == want) << Describe(text, found);
  EXPECT_EQ(MaskPii(text, found), "Card [CREDIT_CARD], mail [EMAIL]");
  EXPECT_EQ(MaskPii(text, found, MaskStyle::kPartial), "Card **** **** **** 1111, mail [EMAIL]");
}

// --- email ---

TEST(PiiEmail, FindsAddresses) {
  ExpectCases({
      {"plain", "mail ana@example.org now", {{K::kEmail, "ana@example.org"}}},
      {"plus tag, dots, subdomains", "john.smith+tag@mail.example.co.uk",
       {{K::kEmail, "john.smith+tag@mail.example.co.uk"}}},
      {"underscore, percent, dash, digits", "<a_b%c-d9@host-1.example.net>",
       {{K::kEmail, "a_b%c-d9@host-1.example.net"}}},
      {"upper case", "JOHN.DOE@EXAMPLE.COM", {{K::kEmail, "JOHN.DOE@EXAMPLE.COM"}}},
      {"sentence period left out", "write to x@y.io.", {{K::kEmail, "x@y.io"}}},
      {"trailing dash left out", "x@y.io-", {{K::kEmail, "x@y.io"}}},
      {"punycode TLD", "kim@xn--80ak6aa92e.xn--p1ai", {{K::kEmail, "kim@xn--80ak6aa92e.xn--p1ai"}}},
      {"digits-only local part", "5551234567@vtext.com", {{K::kEmail, "5551234567@vtext.com"}}},
      {"non-ASCII after the domain", "kim@example.kr\xeb\xa1\x9c \xec\x97\xb0\xeb\x9d\xbd",
       {{K::kEmail, "kim@example.kr"}}},
      {"non-ASCII text, then a separator", "\xec\x9d\xb4\xeb\xa9\x94\xec\x9d\xbc: kim@example.kr",
       {{K::kEmail, "kim@example.kr"}}},
      {"leading dots left out", "...x@y.com", {{K::kEmail, "x@y.com"}}},
      {"text before '..' left out", "a..b@c.com", {{K::kEmail, "b@c.com"}}},
      {"mailto", "mailto:ops@example.com?subject=hi", {{K::kEmail, "ops@example.com"}}},
      {"two adjacent", "a@b.com,c@d.org", {{K::kEmail, "a@b.com"}, {K::kEmail, "c@d.org"}}},
      {"at start and end", "a@b.cd", {{K::kEmail, "a@b.cd"}}},
      {"domain label with dashes", "x@my-host.example", {{K::kEmail, "x@my-host.example"}}},
  });
}

TEST(PiiEmail, RejectsWhatIsNotAnAddress) {
  ExpectCases(
      {
          {"no TLD", "foo@bar", {}},
          {"localhost", "user@localhost", {}},
          {"one-letter TLD", "name@domain.c", {}},
          {"numeric TLD (IP)", "email@123.123.123.123", {}},
          {"package version", "pkg@1.2.3 and lodash@4.17.21", {}},
          {"retina asset", "icon@2x.png logo@3x.jpg", {}},
          {"mention or decorator", "@alice said @app.route('/')", {}},
          {"local part ends with dot", "x.@y.com", {}},
          {"empty label", "a@.com a@b..com", {}},
          {"label ends with dash", "a@b-.com", {}},
          {"quoted local part", "\"q\"@x", {}},
          {"non-ASCII local part", "\xc3\xa9mile@example.com", {}},
          {"glued to non-ASCII text", "\xec\x9d\xb4\xeb\xa9\x94\xec\x9d\xbckim@example.kr", {}},
          {"lone @", "@", {}},
          {"@ at the end", "name@", {}},
      },
      PiiKindBit(K::kEmail));
}

// --- phone ---

TEST(PiiPhone, FindsNumbers) {
  ExpectCases({
      {"E.164 solid", "call +14155552671 now", {{K::kPhone, "+14155552671"}}},
      {"+1 with parens", "+1 (415) 555-2671", {{K::kPhone, "+1 (415) 555-2671"}}},
      {"+1 spaces", "+1 415 555 2671", {{K::kPhone, "+1 415 555 2671"}}},
      {"+1 dashes", "+1-800-555-0199", {{K::kPhone, "+1-800-555-0199"}}},
      {"UK international", "+44 20 7946 0958", {{K::kPhone, "+44 20 7946 0958"}}},
      {"UK with (0)", "+44 (0)20 7946 0958", {{K::kPhone, "+44 (0)20 7946 0958"}}},
      {"France pairs", "+33 1 23 45 67 89", {{K::kPhone, "+33 1 23 45 67 89"}}},
      {"Korea international", "+82 10-1234-5678", {{K::kPhone, "+82 10-1234-5678"}}},
      {"NANP parens", "(415) 555-2671", {{K::kPhone, "(415) 555-2671"}}},
      {"NANP parens no space", "(415)555-2671", {{K::kPhone, "(415)555-2671"}}},
      {"NANP dashes", "415-555-2671", {{K::kPhone, "415-555-2671"}}},
      {"NANP dots", "415.555.2671", {{K::kPhone, "415.555.2671"}}},
      {"NANP spaces", "415 555 2671", {{K::kPhone, "415 555 2671"}}},
      {"NANP with 1", "1-800-555-0199 and 1 (800) 555-0199",
       {{K::kPhone, "1-800-555-0199"}, {K::kPhone, "1 (800) 555-0199"}}},
      {"parenthesis around the number is not part of it", "(555-123-4567)",
       {{K::kPhone, "555-123-4567"}}},
      {"Korean mobile", "010-1234-5678", {{K::kPhone, "010-1234-5678"}}},
      {"Korean mobile spaces", "010 1234 5678", {{K::kPhone, "010 1234 5678"}}},
      {"Korean mobile solid", "01012345678", {{K::kPhone, "01012345678"}}},
      {"Seoul landline", "02-123-4567", {{K::kPhone, "02-123-4567"}}},
      {"Korean area code", "031-1234-5678", {{K::kPhone, "031-1234-5678"}}},
      {"UK national", "020 7946 0958", {{K::kPhone, "020 7946 0958"}}},
      {"UK mobile", "07911 123456", {{K::kPhone, "07911 123456"}}},
      {"glued to Hangul", "\xec\xa0\x84\xed\x99\x94" "010-1234-5678\xeb\xb2\x88",
       {{K::kPhone, "010-1234-5678"}}},
      {"trailing words", "tel: 415-555-2671, ext. 12", {{K::kPhone, "415-555-2671"}}},
      {"two numbers", "415-555-2671 or 415-555-2672",
       {{K::kPhone, "415-555-2671"}, {K::kPhone, "415-555-2672"}}},
  });
}

TEST(PiiPhone, RejectsNumbersThatAreNotPhones) {
  ExpectCases(
      {
          {"ISO date", "2024-01-15", {}},
          {"European date", "15.01.2024 and 01.02.2024", {}},
          {"US date", "01/15/2024", {}},
          {"versions", "1.2.3 and 10.0.19045 and 3.14.2", {}},
          {"time", "12:30:45", {}},
          {"prices", "$1,299.99 or 1 299 euros", {}},
          {"seven-digit local", "555-1234", {}},
          {"plain ten digits", "4155552671", {}},
          {"unix timestamp", "1700000000", {}},
          {"area code starting with 1", "123-456-7890", {}},
          {"mixed separators", "415-555.2671", {}},
          {"country code starting with 0", "+0123456789", {}},
          {"signed decimal", "+3.140000", {}},
          {"too short with plus", "+12 345", {}},
          {"too long", "+1234567890123456", {}},
          {"IPv4", "192.168.100.200", {}},
          {"card", "4111 1111 1111 1111", {}},
          {"SSN shape", "123-45-6789", {}},
          {"ISBN", "978-3-16-148410-0", {}},
          {"glued to letters", "tel415-555-2671 and 415-555-2671x", {}},
          {"glued to a longer number", "415-555-2671-22 and 9.415-555-2671", {}},
      },
      PiiKindBit(K::kPhone));
}

// --- credit cards ---

TEST(PiiCreditCard, FindsCardsOfEveryNetwork) {
  ExpectCases({
      {"Visa solid", "4111111111111111", {{K::kCreditCard, "4111111111111111"}}},
      {"Visa dashes", "4111-1111-1111-1111", {{K::kCreditCard, "4111-1111-1111-1111"}}},
      {"Visa spaces", "4111 1111 1111 1111", {{K::kCreditCard, "4111 1111 1111 1111"}}},
      {"Visa 13 digits", "4222222222222", {{K::kCreditCard, "4222222222222"}}},
      {"Visa 19 digits", "4111111111111111110", {{K::kCreditCard, "4111111111111111110"}}},
      {"Amex 4-6-5", "3782 822463 10005", {{K::kCreditCard, "3782 822463 10005"}}},
      {"Amex solid", "371449635398431", {{K::kCreditCard, "371449635398431"}}},
      {"Mastercard 5x", "5555555555554444", {{K::kCreditCard, "5555555555554444"}}},
      {"Mastercard 2-series", "2223003122003222", {{K::kCreditCard, "2223003122003222"}}},
      {"Discover", "6011 1111 1111 1117", {{K::kCreditCard, "6011 1111 1111 1117"}}},
      {"JCB", "3530111333300000", {{K::kCreditCard, "3530111333300000"}}},
      {"Diners 4-6-4", "3056 930902 5904", {{K::kCreditCard, "3056 930902 5904"}}},
      {"Diners 36", "36227206271667", {{K::kCreditCard, "36227206271667"}}},
      {"UnionPay", "6200000000000005", {{K::kCreditCard, "6200000000000005"}}},
      {"expiry after it", "4111 1111 1111 1111 12/27", {{K::kCreditCard, "4111 1111 1111 1111"}}},
      {"in a sentence", "my card is 5105-1051-0510-5100.",
       {{K::kCreditCard, "5105-1051-0510-5100"}}},
      {"list", "4111111111111111,4012888888881881",
       {{K::kCreditCard, "4111111111111111"}, {K::kCreditCard, "4012888888881881"}}},
      {"between non-ASCII", "\xff\xfe" "4111111111111111\x80",
       {{K::kCreditCard, "4111111111111111"}}},
  });
}

TEST(PiiCreditCard, RejectsNumbersThatAreNotCards) {
  ExpectCases(
      {
          {"Luhn fails", "4111111111111112 and 4111 1111 1111 1112", {}},
          {"16-digit order id (Luhn ok, no network)", "order 1234567812345670", {}},
          {"unknown prefix", "9111111111111111", {}},
          {"Amex with 16 digits", "3782822463100053", {}},
          {"Visa with 15 digits", "411111111111116", {}},
          {"too long", "41111111111111111111", {}},
          {"too short", "411111111111", {}},
          {"glued to letters", "abc4111111111111111xyz", {}},
          {"glued on one side", "x4111111111111111 4111111111111111y", {}},
          {"part of a dashed number", "4111-1111-1111-1111-22 and 7-4111111111111111", {}},
          {"decimal", "0.4111111111111111 and 4111111111111111.5", {}},
          {"mixed separators", "4111-1111 1111-1111", {}},
          {"double spaces", "4111  1111  1111  1111", {}},
          {"odd grouping", "41 11 1111 1111 1111", {}},
      },
      PiiKindBit(K::kCreditCard));
}

// --- IBAN ---

TEST(PiiIban, FindsAccountNumbers) {
  ExpectCases({
      {"Germany grouped", "IBAN DE89 3704 0044 0532 0130 00 please",
       {{K::kIban, "DE89 3704 0044 0532 0130 00"}}},
      {"Germany solid", "DE89370400440532013000", {{K::kIban, "DE89370400440532013000"}}},
      {"UK with letters", "GB29 NWBK 6016 1331 9268 19",
       {{K::kIban, "GB29 NWBK 6016 1331 9268 19"}}},
      {"France", "FR14 2004 1010 0505 0001 3M02 606",
       {{K::kIban, "FR14 2004 1010 0505 0001 3M02 606"}}},
      {"Netherlands solid", "NL91ABNA0417164300", {{K::kIban, "NL91ABNA0417164300"}}},
      {"Belgium (16)", "BE68539007547034", {{K::kIban, "BE68539007547034"}}},
      {"Norway (15)", "NO93 8601 1117 947", {{K::kIban, "NO93 8601 1117 947"}}},
      {"Italy", "IT60X0542811101000000123456", {{K::kIban, "IT60X0542811101000000123456"}}},
      {"Poland", "PL61 1090 1014 0000 0712 1981 2874",
       {{K::kIban, "PL61 1090 1014 0000 0712 1981 2874"}}},
      {"followed by a number", "DE89 3704 0044 0532 0130 00 12",
       {{K::kIban, "DE89 3704 0044 0532 0130 00"}}},
  });
}

TEST(PiiIban, RejectsBadAccountNumbers) {
  ExpectCases(
      {
          {"bad checksum", "DE89 3704 0044 0532 0130 01 and DE88370400440532013000", {}},
          {"wrong length for the country", "DE89 3704 0044 0532 0130 0", {}},
          {"unknown country", "ZZ89370400440532013000", {}},
          {"lower case", "de89370400440532013000", {}},
          {"bad grouping", "DE89 37040044 0532 0130 00", {}},
          {"glued", "xDE89370400440532013000 DE89370400440532013000x", {}},
          {"short group in the middle", "DE89 3704 004 40532 0130 00", {}},
      },
      PiiKindBit(K::kIban));
}

// --- US SSN ---

TEST(PiiUsSsn, FindsNumbers) {
  ExpectCases({
      {"dashes", "SSN 123-45-6789.", {{K::kUsSsn, "123-45-6789"}}},
      {"spaces", "123 45 6789", {{K::kUsSsn, "123 45 6789"}}},
      {"highest area", "899-99-9999", {{K::kUsSsn, "899-99-9999"}}},
      {"area next to 666", "665-12-3456 667-12-3456",
       {{K::kUsSsn, "665-12-3456"}, {K::kUsSsn, "667-12-3456"}}},
  });
}

TEST(PiiUsSsn, RejectsInvalidNumbers) {
  ExpectCases(
      {
          {"area 000", "000-12-3456", {}},
          {"area 666", "666-12-3456", {}},
          {"area 9xx", "900-12-3456 999-12-3456", {}},
          {"group 00", "123-00-4567", {}},
          {"serial 0000", "123-45-0000", {}},
          {"solid", "123456789", {}},
          {"mixed separators", "123-45 6789", {}},
          {"dots", "123.45.6789", {}},
          {"part of a longer number", "123-45-6789-0 and 1123-45-6789 and 2-123-45-6789", {}},
      },
      PiiKindBit(K::kUsSsn));
}

// --- Korean RRN ---

TEST(PiiKrRrn, FindsNumbers) {
  ExpectCases({
      {"valid check digit", "900101-1234568", {{K::kKrRrn, "900101-1234568"}}},
      {"check digit not required (post-2020 numbers)", "900101-1234567",
       {{K::kKrRrn, "900101-1234567"}}},
      {"born 2000s, leap day", "000229-3123456", {{K::kKrRrn, "000229-3123456"}}},
      {"foreign resident", "850715-5123456", {{K::kKrRrn, "850715-5123456"}}},
      {"in Korean text", "\xec\xa3\xbc\xeb\xaf\xbc" "900101-2345678\xec\x9e\x85",
       {{K::kKrRrn, "900101-2345678"}}},
  });
}

TEST(PiiKrRrn, RejectsInvalidNumbers) {
  ExpectCases(
      {
          {"not a leap year", "010229-3123456", {}},
          {"1900 is not a leap year", "000229-1123456", {}},
          {"month 13", "901301-1234567", {}},
          {"day 32", "900132-1234567", {}},
          {"April 31", "900431-1234567", {}},
          {"gender digit 9", "900101-9234567", {}},
          {"gender digit 0", "900101-0234567", {}},
          {"no dash", "9001011234567", {}},
          {"eight digits after the dash", "900101-12345678", {}},
      },
      PiiKindBit(K::kKrRrn));
}

// --- IPv4 ---

TEST(PiiIpv4, FindsAddresses) {
  ExpectCases({
      {"plain", "host 192.168.1.1 is up", {{K::kIpv4, "192.168.1.1"}}},
      {"port left out", "10.0.0.1:8080", {{K::kIpv4, "10.0.0.1"}}},
      {"prefix length left out", "10.0.0.0/8", {{K::kIpv4, "10.0.0.0"}}},
      {"extremes", "10.0.0.0 255.255.255.255",
       {{K::kIpv4, "10.0.0.0"}, {K::kIpv4, "255.255.255.255"}}},
      {"end of sentence", "ping 8.8.4.44.", {{K::kIpv4, "8.8.4.44"}}},
      {"quoted", "('127.0.0.1')", {{K::kIpv4, "127.0.0.1"}}},
      {"a range", "10.0.0.1-10.0.0.255", {{K::kIpv4, "10.0.0.1"}, {K::kIpv4, "10.0.0.255"}}},
  });
}

TEST(PiiIpv4, RejectsWhatIsNotAnAddress) {
  ExpectCases(
      {
          {"five parts", "1.2.3.4.5 and 10.20.30.40.50", {}},
          {"octet above 255", "256.1.1.1 and 1.1.1.300", {}},
          {"leading zero", "01.2.3.4 and 10.0.0.01", {}},
          {"version prefix", "v1.2.3.4 and v10.20.30.40", {}},
          {"four single digits (versions)", "Git 1.8.1.4 release and 0.0.0.0", {}},
          {"three parts", "10.0.0", {}},
          {"inside a dotted name", "a.10.0.0.1 and 10.0.0.1.example", {}},
          {"glued", "10.0.0.1a", {}},
      },
      PiiKindBit(K::kIpv4));
}

// --- IPv6 ---

TEST(PiiIpv6, FindsAddresses) {
  ExpectCases({
      {"compressed", "2001:db8::1", {{K::kIpv6, "2001:db8::1"}}},
      {"link-local with zone", "fe80::1%eth0", {{K::kIpv6, "fe80::1"}}},
      {"loopback", "at ::1.", {{K::kIpv6, "::1"}}},
      {"bracketed with port", "[2001:db8:85a3::8a2e:370:7334]:443",
       {{K::kIpv6, "2001:db8:85a3::8a2e:370:7334"}}},
      {"embedded IPv4", "::ffff:192.0.2.1", {{K::kIpv6, "::ffff:192.0.2.1"}}},
      {"embedded IPv4 of single digits", "::ffff:1.2.3.4", {{K::kIpv6, "::ffff:1.2.3.4"}}},
      {"full form", "2001:0db8:85a3:0000:0000:8a2e:0370:7334",
       {{K::kIpv6, "2001:0db8:85a3:0000:0000:8a2e:0370:7334"}}},
      {"upper case", "2001:DB8::A1", {{K::kIpv6, "2001:DB8::A1"}}},
      {"trailing ::", "2001:db8::/32", {{K::kIpv6, "2001:db8::"}}},
      {"full form with IPv4", "0:0:0:0:0:ffff:192.0.2.1", {{K::kIpv6, "0:0:0:0:0:ffff:192.0.2.1"}}},
      {"colon after it", "addr fe80::1: reachable", {{K::kIpv6, "fe80::1"}}},
  });
}

TEST(PiiIpv6, RejectsWhatIsNotAnAddress) {
  ExpectCases(
      {
          {"times", "12:30:45 and 10:30", {}},
          {"C++ names", "std::map and Abc::Def and ::", {}},
          {"MAC address", "00:1A:2B:3C:4D:5E", {}},
          {"too many groups", "1:2:3:4:5:6:7:8:9", {}},
          {"seven groups without ::", "1:2:3:4:5:6:7", {}},
          {"two ::", "2001:db8::1::2", {}},
          {"group of five", "12345::1", {}},
          {"glued", "fe80::1g and xfe80::1", {}},
          {"after a dotted number", "1.2.3.4:80", {}},
      },
      PiiKindBit(K::kIpv6));
}

// --- API keys ---

TEST(PiiApiKey, FindsKnownPrefixes) {
  ExpectCases({
      {"OpenAI project key", "key sk-proj-Zt7Qm2Xc9Vb4Nn8Ls1Kd6Jf3Hg5Ra0We ok",
       {{K::kApiKey, "sk-proj-Zt7Qm2Xc9Vb4Nn8Ls1Kd6Jf3Hg5Ra0We"}}},
      {"OpenAI legacy key", "sk-4fQ9zX2LmP7rT1vB8nK3yH6wD0cS5jG2",
       {{K::kApiKey, "sk-4fQ9zX2LmP7rT1vB8nK3yH6wD0cS5jG2"}}},
      {"Anthropic", "sk-ant-api03-Ab3dEf6hIj9kLm2nOp5qRs8t",
       {{K::kApiKey, "sk-ant-api03-Ab3dEf6hIj9kLm2nOp5qRs8t"}}},
      {"AWS access key id", "AKIAIOSFODNN7EXAMPLE", {{K::kApiKey, "AKIAIOSFODNN7EXAMPLE"}}},
      {"AWS temporary key id", "id=ASIAY34FZKBOKMUTVV7A;", {{K::kApiKey, "ASIAY34FZKBOKMUTVV7A"}}},
      {"GitHub PAT", "ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789",
       {{K::kApiKey, "ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789"}}},
      {"GitHub OAuth", "gho_16C7e42F292c6912E7710c838347Ae178B4a",
       {{K::kApiKey, "gho_16C7e42F292c6912E7710c838347Ae178B4a"}}},
      {"GitHub fine-grained", "github_pat_11ABCDEFG0abcdefghijkl_MnOpQrStUvWxYz0123456789",
       {{K::kApiKey, "github_pat_11ABCDEFG0abcdefghijkl_MnOpQrStUvWxYz0123456789"}}},
      {"Slack bot", "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx",
       {{K::kApiKey, "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx"}}},
      {"Slack user", "xoxp-1234567890-abcdef", {{K::kApiKey, "xoxp-1234567890-abcdef"}}},
      {"Google", "AIzaSyA-1234567890abcdefghijklmnopqrstu",
       {{K::kApiKey, "AIzaSyA-1234567890abcdefghijklmnopqrstu"}}},
      {"GitLab", "glpat-xY9zA8bC7dE6fG5hI4jK", {{K::kApiKey, "glpat-xY9zA8bC7dE6fG5hI4jK"}}},
      {"Stripe live secret", "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
       {{K::kApiKey, "sk_live_4eC39HqLyjWDarjtT1zdp7dc"}}},
      {"Stripe test restricted", "rk_test_51Habc0123456789XYZ",
       {{K::kApiKey, "rk_test_51Habc0123456789XYZ"}}},
      {"Hugging Face", "hf_aBcDeFgHiJkLmNoPqRsTuVwXyZ12345678",
       {{K::kApiKey, "hf_aBcDeFgHiJkLmNoPqRsTuVwXyZ12345678"}}},
      {"in an environment line", "export OPENAI_API_KEY=sk-proj-Zt7Qm2Xc9Vb4Nn8Ls1Kd6Jf3",
       {{K::kApiKey, "sk-proj-Zt7Qm2Xc9Vb4Nn8Ls1Kd6Jf3"}}},
      {"inside a URL path", "https://x.test/v1/ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789/info",
       {{K::kApiKey, "ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789"}}},
      {"JWT", "Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0."
              "dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
       {{K::kApiKey, "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0."
                     "dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"}}},
      {"JWT without signature", "eyJhbGciOiJub25lIn0.eyJzdWIiOiIxMjM0NTY3ODkwIn0.",
       {{K::kApiKey, "eyJhbGciOiJub25lIn0.eyJzdWIiOiIxMjM0NTY3ODkwIn0."}}},
  });
}

TEST(PiiApiKey, RejectsLookAlikes) {
  ExpectCases(
      {
          {"sk- phrase", "sk-learn-compatible-estimator-v2 and sk-12345678901234567890", {}},
          {"short bodies", "sk-proj-abc ghp_short hf_short glpat-abc xoxb-1", {}},
          {"AWS id too short", "AKIAIOSFODNN7EXAMPL", {}},
          {"AWS id too long", "AKIAIOSFODNN7EXAMPLEX", {}},
          {"AWS id glued", "AKIAIOSFODNN7EXAMPLEa", {}},
          {"GitHub token too short", "ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ012345678", {}},
          {"Slack without digits", "xoxb-abcdefghijklmnop", {}},
          {"Google too short", "AIzaSyA-1234567890abcdefghijklmnopqrst", {}},
          {"Google too long", "AIzaSyA-1234567890abcdefghijklmnopqrstuv", {}},
          {"prefix glued to a word", "ask-proj-Zt7Qm2Xc9Vb4Nn8Ls1Kd6Jf3Hg5Ra0We", {}},
          {"JWT with short parts", "eyJhbGci.eyJzdWIi.abc", {}},
      },
      PiiKindBit(K::kApiKey));
}

constexpr std::string_view kPemBody =
    "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj\n"
    "MzEfYyjiWA4R4/M2bS1GB4t7NXp98C3SC6dVMvDuictGeurT8jNbvJZHtCSuYEvu\n"
    "NMoSfm76oqFvAp8Gy0iz5sxjZmSnXyCdPEovGhLa0VzMaQ8s+CLOyS56YyCFGeJZ\n";

TEST(PiiApiKey, FindsPemPrivateKeyBlocks) {
  const std::string full = fmt::format(
      "key:\n-----BEGIN PRIVATE KEY-----\n{}-----END PRIVATE KEY-----\nthanks", kPemBody);
  const std::string rsa = fmt::format(
      "-----BEGIN RSA PRIVATE KEY-----\n{}-----END RSA PRIVATE KEY-----", kPemBody);
  std::string json_body(kPemBody);
  for (size_t p; (p = json_body.find('\n')) != std::string::npos;) json_body.replace(p, 1, "\\n");
  const std::string json = fmt::format(
      "{{\"private_key\": \"-----BEGIN PRIVATE KEY-----\\n{}-----END PRIVATE KEY-----\\n\"}}",
      json_body);
  const std::string truncated =
      fmt::format("-----BEGIN OPENSSH PRIVATE KEY-----\n{}The rest was cut.", kPemBody);
  const std::string pgp = fmt::format(
      "-----BEGIN PGP PRIVATE KEY BLOCK-----\n\n{}-----END PGP PRIVATE KEY BLOCK-----", kPemBody);
  const std::string body_end_line = std::string(kPemBody.substr(0, kPemBody.size() - 1));
  ExpectCases({
      {"PKCS#8", full,
       {{K::kApiKey, fmt::format("-----BEGIN PRIVATE KEY-----\n{}-----END PRIVATE KEY-----",
                                 kPemBody)}}},
      {"RSA", rsa, {{K::kApiKey, rsa}}},
      {"inside JSON with escaped newlines", json,
       {{K::kApiKey, fmt::format("-----BEGIN PRIVATE KEY-----\\n{}-----END PRIVATE KEY-----",
                                 json_body)}}},
      {"truncated: up to the end of the base64 lines", truncated,
       {{K::kApiKey, "-----BEGIN OPENSSH PRIVATE KEY-----\n" + body_end_line}}},
      {"PGP key block", pgp, {{K::kApiKey, pgp}}},
  });
}

TEST(PiiApiKey, IgnoresPublicPemBlocks) {
  const std::string cert = fmt::format(
      "-----BEGIN CERTIFICATE-----\n{}-----END CERTIFICATE-----", "MIIB\n");
  const std::string pub = fmt::format(
      "-----BEGIN PUBLIC KEY-----\n{}-----END PUBLIC KEY-----", "MIIB\n");
  ExpectCases({{"certificate", cert, {}}, {"public key", pub, {}}}, PiiKindBit(K::kApiKey));
}

// --- secrets ---

TEST(PiiSecret, FindsHighEntropyTokens) {
  ExpectCases({
      {"base62, 20 chars", "token u8jzPde0IgxLd6GncfBA here",
       {{K::kSecret, "u8jzPde0IgxLd6GncfBA"}}},
      {"base62, 40 chars", "DL7DxtpYlSXpfKtHF4vUCsMehGAkWvj7FAc9QeWJ",
       {{K::kSecret, "DL7DxtpYlSXpfKtHF4vUCsMehGAkWvj7FAc9QeWJ"}}},
      {"base64 with padding", "secret: ORS/6ilI8ihN5KXSc7Tvo/hBKqFYY/kv5ZJr3J1TWD==;",
       {{K::kSecret, "ORS/6ilI8ihN5KXSc7Tvo/hBKqFYY/kv5ZJr3J1TWD=="}}},
      {"base64url", "tkwtDDb-xHKas1VOqg6YYZYn9ZhyiA4uoRgnatmUdjA",
       {{K::kSecret, "tkwtDDb-xHKas1VOqg6YYZYn9ZhyiA4uoRgnatmUdjA"}}},
      {"assignment: only the value", "password=epfJBd0Kh8oOOL8dKLzdocJ2",
       {{K::kSecret, "epfJBd0Kh8oOOL8dKLzdocJ2"}}},
      {"AWS secret access key", "aws_secret_access_key = 89XdkyHTUXNoGEQUVwdW3edC2fXAnCwjJe3J/Sg6",
       {{K::kSecret, "89XdkyHTUXNoGEQUVwdW3edC2fXAnCwjJe3J/Sg6"}}},
      {"random segment of a URL",
       "https://docs.example.com/d/1yrYZJ2twrbpUuScbo3rmN_v-Jfv6d2t/edit",
       {{K::kSecret, "1yrYZJ2twrbpUuScbo3rmN_v-Jfv6d2t"}}},
  });
}

TEST(PiiSecret, RejectsWordsIdentifiersAndDigests) {
  ExpectCases(
      {
          {"long English word", "internationalization Supercalifragilisticexpialidocious", {}},
          {"identifiers", "HTTP_Request_Handler2 getUserAccountSettingsById2 "
                          "my_very_long_variable_name_2 XMLHttpRequestUpload2024", {}},
          {"constants", "TLS1_CK_DH_anon_WITH_ARIA_128_GCM_SHA256 V4L2_PIX_FMT_SGRBG10DPCM8", {}},
          {"paths", "/usr/lib/x86_64-linux-gnu/libstdc++.so.6 src/components/UserProfile2.tsx", {}},
          {"URL with a commit SHA",
           "https://github.com/npm/npm/commit/2f6a1df3e1e3e0a3bc4abb69e40f59a64204e7aa",
           {}},
          {"UUID", "550e8400-e29b-41d4-a716-446655440000", {}},
          {"git SHA and SHA-256", "8b1db9c0a7dc39261218a0fac2dd6cf4fbb6a7b4 "
                                  "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822c"
                                  "d15d6c15b0f00a08",
           {}},
          {"alphabet",
           "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_ abcdefghijklmnopqrstuvwxyz0123456789",
           {}},
          {"low entropy", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa1A aAaAaAaAaAaAaAaAaAaA1111", {}},
          {"two classes", "AbCdEfGhIjKlMnOpQrStUvWxYz lowercaseanddigits1234567890", {}},
          {"SRI digest",
           "sha384-SggXRQHwCG8g+DktYYzxkXRIkTiEYWBHqev0xnpCxYlqMBufKZHAHQM3/boDaI/0",
           {}},
          {"too short", "aZ8kP2mQ9xL4vN7bR1t", {}},
          {"too long (data, not a secret)", std::string_view(
               "iVBORw0KGgoAAAANSUhEUgAAAA4AAAAOCAMAAAAolt3jAAAA1VBMVEUAAABhlctjlstkl8tlmMtlmMxl"
               "mcxmmcxnmsxpnMxpnM1qnc1sn85voM91oM11oc1xotB2oc56pNF6pNJ2ptJ8ptJ8ptN9ptN8p9N5qNJ9"
               "p9N9p9R8qtOBqdSAqtOAqtR2BrNSCrNJrdWDrNWCsNWCsNaJs9eLs9iRvNuVvdyVv9yXwd2Zwt6axN6d"
               "xt2BfxBChyeGiyuGjyu"), {}},
      },
      PiiKindBit(K::kSecret));
}

// Random tokens of the shapes credentials take are found nearly always; the
// rare miss is a token that happens to be low in entropy or classes.
TEST(PiiSecret, FindsNearlyAllRandomTokens) {
  std::mt19937 rng(42);
  const std::string b64url =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  for (size_t length : {24, 32, 40, 64}) {
    int found = 0;
    constexpr int kTokens = 1000;
    for (int t = 0; t < kTokens; ++t) {
      std::string token;
      for (size_t i = 0; i < length; ++i) token += b64url[rng() % b64url.size()];
      const std::string text = "value " + token + " end";
      const auto m = FindPii(text, PiiKindBit(K::kSecret));
      found += m.size() == 1 && m[0].start == 6 && m[0].end == 6 + length;
    }
    EXPECT_GE(found, kTokens * 90 / 100) << "length " << length;
  }
}

// --- overlaps, boundaries, kind sets ---

TEST(Pii, ResolvesOverlapsInFavourOfTheMoreInformativeMatch) {
  ExpectCases({
      {"known key wins over the secret rule", "sk-proj-Zt7Qm2Xc9Vb4Nn8Ls1Kd6Jf3Hg5Ra0We",
       {{K::kApiKey, "sk-proj-Zt7Qm2Xc9Vb4Nn8Ls1Kd6Jf3Hg5Ra0We"}}},
      {"email wins over the secret in its local part", "aZ8kP2mQ9xL4vN7bR1tY6wE3@example.com",
       {{K::kEmail, "aZ8kP2mQ9xL4vN7bR1tY6wE3@example.com"}}},
      {"email wins over the phone in its local part", "+14155552671@example.com",
       {{K::kEmail, "+14155552671@example.com"}}},
      {"JWT wins over its high-entropy parts",
       "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0."
       "dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
       {{K::kApiKey, "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0."
                     "dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"}}},
      {"IBAN wins over the numbers inside it", "DE89 3704 0044 0532 0130 00",
       {{K::kIban, "DE89 3704 0044 0532 0130 00"}}},
      {"one phone, not one per parenthesis", "+1 (415) 555-2671",
       {{K::kPhone, "+1 (415) 555-2671"}}},
      {"private key wins over its base64 lines",
       fmt::format("-----BEGIN PRIVATE KEY-----\n{}-----END PRIVATE KEY-----", kPemBody),
       {{K::kApiKey, fmt::format("-----BEGIN PRIVATE KEY-----\n{}-----END PRIVATE KEY-----",
                                 kPemBody)}}},
      {"adjacent matches", "a@b.com,4111111111111111,10.0.0.1",
       {{K::kEmail, "a@b.com"}, {K::kCreditCard, "4111111111111111"}, {K::kIpv4, "10.0.0.1"}}},
      {"everything at once",
       "Ana (ana@example.org, +44 20 7946 0958) paid with 4111 1111 1111 1111 from "
       "DE89 3704 0044 0532 0130 00; SSN 123-45-6789, RRN 900101-1234568, host 10.1.2.3 / "
       "fe80::1, key AKIAIOSFODNN7EXAMPLE, token u8jzPde0IgxLd6GncfBA.",
       {{K::kEmail, "ana@example.org"},
        {K::kPhone, "+44 20 7946 0958"},
        {K::kCreditCard, "4111 1111 1111 1111"},
        {K::kIban, "DE89 3704 0044 0532 0130 00"},
        {K::kUsSsn, "123-45-6789"},
        {K::kKrRrn, "900101-1234568"},
        {K::kIpv4, "10.1.2.3"},
        {K::kIpv6, "fe80::1"},
        {K::kApiKey, "AKIAIOSFODNN7EXAMPLE"},
        {K::kSecret, "u8jzPde0IgxLd6GncfBA"}}},
  });
}

TEST(Pii, NeverMatchesGluedToLettersOrDigits) {
  ExpectCases({
      {"card", "abc4111111111111111xyz", {}},
      {"SSN", "x123-45-6789 123-45-6789x 0123-45-6789", {}},
      {"RRN", "a900101-1234568 900101-1234568b", {}},
      {"phone", "a+14155552671 +14155552671b", {}},
      {"IPv4", "x10.0.0.1 10.0.0.1x", {}},
      {"IBAN", "aDE89370400440532013000", {}},
      {"AWS key", "xAKIAIOSFODNN7EXAMPLE", {}},
  });
}

TEST(Pii, MatchesAtTheVeryStartAndEnd) {
  ExpectCases({
      {"card alone", "4111111111111111", {{K::kCreditCard, "4111111111111111"}}},
      {"email then phone", "a@b.co 415-555-2671",
       {{K::kEmail, "a@b.co"}, {K::kPhone, "415-555-2671"}}},
      {"IPv6 alone", "::1", {{K::kIpv6, "::1"}}},
      {"secret alone", "u8jzPde0IgxLd6GncfBA", {{K::kSecret, "u8jzPde0IgxLd6GncfBA"}}},
      {"key alone", "AKIAIOSFODNN7EXAMPLE", {{K::kApiKey, "AKIAIOSFODNN7EXAMPLE"}}},
  });
}

TEST(Pii, SearchesOnlyTheRequestedKinds) {
  const std::string_view text =
      "ana@example.org 415-555-2671 4111111111111111 sk-proj-Zt7Qm2Xc9Vb4Nn8Ls1Kd6Jf3Hg5Ra0We";
  const auto emails = FindPii(text, PiiKindBit(K::kEmail));
  ASSERT_EQ(emails.size(), 1u) << Describe(text, emails);
  EXPECT_EQ(emails[0].kind, K::kEmail);
  EXPECT_TRUE(FindPii(text, 0).empty());
  EXPECT_TRUE(FindPii(text, ~PiiKinds{0}) == FindPii(text)) << "bits above kAllPii are ignored";
  // Without api_key, the key is still a high-entropy secret.
  const auto secrets = FindPii(text, PiiKindBit(K::kSecret));
  ASSERT_EQ(secrets.size(), 1u) << Describe(text, secrets);
  EXPECT_EQ(text.substr(secrets[0].start, secrets[0].end - secrets[0].start),
            "sk-proj-Zt7Qm2Xc9Vb4Nn8Ls1Kd6Jf3Hg5Ra0We");
}

TEST(Pii, EmptyAndPlainTextHaveNoMatches) {
  EXPECT_TRUE(FindPii("").empty());
  EXPECT_TRUE(FindPii(std::string_view()).empty());
  const std::string_view prose =
      "The quick brown fox jumps over the lazy dog. On 2024-03-11 at 10:30 we shipped "
      "version 3.14.2 for $49.99 (order #100234871), see section 4.2 and RFC 5322. "
      "It was 72 degrees; 3 of 5 tests passed in 1.5s.";
  const auto found = FindPii(prose);
  EXPECT_TRUE(found.empty()) << Describe(prose, found);
}

// --- large, hostile and broken input ---

TEST(Pii, FindsEveryPlantedItemInOneMegabyte) {
  const std::string filler =
      "Customers write long messages about orders, deliveries and refunds; numbers like "
      "42, 3.5 and 2024-05-01 appear everywhere but identify nobody. ";
  const std::vector<std::pair<PiiKind, std::string>> items = {
      {K::kEmail, "maria@example.com"}, {K::kCreditCard, "4111 1111 1111 1111"},
      {K::kPhone, "+1 415 555 2671"},   {K::kUsSsn, "123-45-6789"},
      {K::kIpv4, "203.0.113.9"},        {K::kApiKey, "AKIAIOSFODNN7EXAMPLE"},
  };
  std::string text;
  std::vector<PiiMatch> want;
  size_t next = 0;
  while (text.size() < (1u << 20)) {
    text += filler;
    if (text.size() > next) {
      const auto& [kind, value] = items[want.size() % items.size()];
      want.push_back({kind, text.size(), text.size() + value.size()});
      text += value;
      text += ' ';
      next += 10'000;
    }
  }
  const auto start = std::chrono::steady_clock::now();
  const std::vector<PiiMatch> got = FindPii(text);
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_TRUE(got == want) << "found " << got.size() << " of " << want.size();
  EXPECT_LT(secs, 2.0) << "1 MB took " << secs << " s";
}

// Inputs built to trigger every detector at every byte; each must stay linear
// (a quadratic detector would need minutes on a megabyte).
TEST(Pii, StaysLinearOnHostileInput) {
  const char* const units[] = {
      "1",  "1 ",   "1-",    "1.",     "12:",     "a@",      "@a.",     ":",      "::",  "a:",
      "+1", "+1 (", "(1) ",  "0 ",     "DE89 ",   "AA",      "sk-",     "ghp_",   "eyJ", "eyJa.",
      "-",  "a-",   "aB3+/", "xoxb-1", "-----BEGIN PRIVATE KEY-----\n", "-----END ", "=", "1.1.",
  };
  for (const char* unit : units) {
    std::string text;
    while (text.size() < (1u << 20)) text += unit;
    const auto start = std::chrono::steady_clock::now();
    const auto found = FindPii(text);
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    ExpectWellFormed(text, found, kAllPii, unit);
    EXPECT_LT(secs, 3.0) << "'" << unit << "' repeated to 1 MB took " << secs << " s";
  }
}

TEST(Pii, SurvivesBinaryAndInvalidUtf8) {
  std::mt19937 rng(7);
  std::string bytes(1 << 20, '\0');
  for (char& c : bytes) c = static_cast<char>(rng());
  ExpectWellFormed(bytes, FindPii(bytes), kAllPii, "random bytes");
  // Invalid UTF-8 around PII is just more separators.
  ExpectCases({
      {"lone continuation bytes", "\x80\x80 ana@example.org\x80 \x80" "10.0.0.1\x80",
       {{K::kEmail, "ana@example.org"}, {K::kIpv4, "10.0.0.1"}}},
      {"truncated sequence at the end", "4111111111111111 \xe6\x97",
       {{K::kCreditCard, "4111111111111111"}}},
      {"NUL bytes", std::string_view("\0" "10.0.0.1\0", 10), {{K::kIpv4, "10.0.0.1"}}},
  });
}

// Random edits of PII-rich text: results stay well-formed, and every match is
// one its detector finds on its own (overlap resolution only ever drops).
TEST(Pii, MutatedTextKeepsTheContract) {
  const std::string seed =
      "Ana <ana.lopez+x@mail.example.org> +44 (0)20 7946 0958, 4111-1111-1111-1111 exp 12/27, "
      "GB29 NWBK 6016 1331 9268 19, 123-45-6789, 900101-1234568, 10.0.0.1:80, "
      "[2001:db8::1]:443, sk-proj-Zt7Qm2Xc9Vb4Nn8Ls1Kd6Jf3Hg5Ra0We, AKIAIOSFODNN7EXAMPLE, "
      "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.sig, u8jzPde0IgxLd6GncfBA, "
      "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIBkg\n-----END EC PRIVATE KEY-----";
  const char alphabet[] = "0123456789 -.:@+()/_=aZ\n\x80\xff";
  std::mt19937 rng(1234);
  for (int round = 0; round < 3000; ++round) {
    std::string text = seed;
    const int edits = 1 + rng() % 6;
    for (int e = 0; e < edits; ++e) {
      const size_t pos = rng() % text.size();
      const char c = alphabet[rng() % (sizeof(alphabet) - 1)];
      switch (rng() % 3) {
        case 0: text[pos] = c; break;
        case 1: text.insert(text.begin() + pos, c); break;
        default: text.erase(pos, 1); break;
      }
    }
    const std::vector<PiiMatch> all = FindPii(text);
    ExpectWellFormed(text, all, kAllPii, text);
    for (const PiiMatch& m : all) {
      const auto alone = FindPii(text, PiiKindBit(m.kind));
      EXPECT_NE(std::find(alone.begin(), alone.end(), m), alone.end())
          << PiiKindName(m.kind) << " [" << m.start << "," << m.end << ") in: " << text;
    }
    if (HasFailure()) return;
  }
}

// --- masking ---

TEST(MaskPii, ReplacesMatchesWithLabels) {
  const std::string_view text =
      "a@b.co 415-555-2671 4111111111111111 DE89370400440532013000 123-45-6789 "
      "900101-1234568 10.0.0.1 ::1 AKIAIOSFODNN7EXAMPLE u8jzPde0IgxLd6GncfBA";
  EXPECT_EQ(MaskPii(text, FindPii(text)),
            "[EMAIL] [PHONE] [CREDIT_CARD] [IBAN] [US_SSN] [KR_RRN] [IPV4] [IPV6] [API_KEY] "
            "[SECRET]");
}

TEST(MaskPii, PartialStyleKeepsLayoutAndLastFour) {
  struct {
    std::string_view name, text, want;
  } cases[] = {
      {"card with spaces", "4111 1111 1111 1111", "**** **** **** 1111"},
      {"card with dashes", "4111-1111-1111-1111", "****-****-****-1111"},
      {"phone", "+1 (415) 555-2671", "+* (***) ***-2671"},
      {"SSN", "123-45-6789", "***-**-6789"},
      {"RRN", "900101-1234568", "******-***4568"},
      {"IBAN", "DE89 3704 0044 0532 0130 00", "**** **** **** **** **30 00"},
      {"email gets the label", "x ana@example.org y", "x [EMAIL] y"},
      {"IP gets the label", "10.0.0.1", "[IPV4]"},
      {"key gets the label", "AKIAIOSFODNN7EXAMPLE!", "[API_KEY]!"},
      {"secret gets the label", "u8jzPde0IgxLd6GncfBA", "[SECRET]"},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(MaskPii(c.text, FindPii(c.text), MaskStyle::kPartial), c.want) << c.name;
  }
}

TEST(MaskPii, IgnoresMatchesThatDoNotFitTheText) {
  const std::string_view text = "0123456789";
  EXPECT_EQ(MaskPii(text, {}), text);
  EXPECT_EQ(MaskPii("", {}), "");
  EXPECT_EQ(MaskPii(text, {{K::kEmail, 2, 4}}), "01[EMAIL]456789");
  EXPECT_EQ(MaskPii(text, {{K::kEmail, 0, 10}}), "[EMAIL]");
  EXPECT_EQ(MaskPii(text, {{K::kEmail, 8, 11}}), text) << "past the end";
  EXPECT_EQ(MaskPii(text, {{K::kEmail, 4, 4}}), text) << "empty";
  EXPECT_EQ(MaskPii(text, {{K::kEmail, 5, 3}}), text) << "reversed";
  EXPECT_EQ(MaskPii(text, {{K::kEmail, 2, 6}, {K::kPhone, 4, 8}}), "01[EMAIL]6789")
      << "overlapping the previous one";
  EXPECT_EQ(MaskPii(text, {{K::kEmail, 6, 8}, {K::kPhone, 1, 3}}), "012345[EMAIL]89")
      << "out of order";
  EXPECT_EQ(MaskPii(text, {{K::kEmail, 0, 2}, {K::kPhone, 2, 4}}), "[EMAIL][PHONE]456789")
      << "adjacent";
  EXPECT_EQ(MaskPii(text, {{static_cast<PiiKind>(99), 0, 1}}), "[PII]123456789");
}

}  // namespace
}  // namespace bastion
