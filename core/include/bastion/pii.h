// PII detectors: find personal data and credentials in model inputs and
// outputs, and mask them.
//
//   std::string_view text = "Card 4111 1111 1111 1111, mail ana@example.org";
//   std::vector<bastion::PiiMatch> found = bastion::FindPii(text);
//   // found[0] = {kCreditCard, 5, 24}, found[1] = {kEmail, 31, 46}
//   bastion::MaskPii(text, found);
//   // "Card [CREDIT_CARD], mail [EMAIL]"
//   bastion::MaskPii(text, found, bastion::MaskStyle::kPartial);
//   // "Card **** **** **** 1111, mail [EMAIL]"
//
//   // Only some kinds (a Lua policy's pii.find(text, {"email", "phone"})):
//   bastion::PiiKinds kinds = bastion::PiiKindBit(bastion::PiiKind::kEmail) |
//                             bastion::PiiKindBit(bastion::PiiKind::kPhone);
//   found = bastion::FindPii(text, kinds);
//
// Contract of FindPii:
//   - Matches are byte offsets [start, end) into the text, sorted by start and
//     never overlapping.
//   - No match is glued to an ASCII letter or digit on either side:
//     "abc4111111111111111xyz" holds no card. Some detectors ask more of their
//     surroundings (see each rule below).
//   - The text is treated as bytes. Only ASCII letters and digits are word
//     characters; any byte >= 0x80 (UTF-8 or not) separates words, so
//     "전화010-1234-5678" holds a phone number — except before an email's
//     local part (see email). Invalid UTF-8 is never an error: it is just
//     more separators. Full-width digits are not digits.
//   - Linear time in the text size (no backtracking, no std::regex); about one
//     byte-classifying pass plus memchr scans for '@', ':' and "-----BEGIN ".
//   - Overlaps between detectors are resolved so that the most informative
//     match survives: among overlapping candidates the longer one wins; at
//     equal length the more specific kind wins, in the order api_key,
//     credit_card, iban, kr_rrn, us_ssn, email, ipv6, ipv4, phone. A secret
//     (the generic high-entropy rule) is only kept where nothing else matched,
//     so a known key is reported as api_key, never as secret.
//
// Thread safety: every function here is pure and may be called from any
// number of threads at once.
//
// Detector rules (what each kind matches, and what it deliberately does not):
//
// email      local@domain. Local part: 1-64 of [A-Za-z0-9._%+-], not starting
//            or ending with '.', no ".." (text before a ".." is not part of
//            the address). Domain: 2+ labels of [A-Za-z0-9-] (1-63 chars, no
//            leading/trailing '-'), at most 253 chars, ending in a TLD of 2+
//            letters or an "xn--" punycode TLD. A trailing '.' or '-' is left
//            out ("write to a@b.com." -> "a@b.com"). ASCII only: addresses
//            with non-ASCII characters, quoted local parts and IP-literal
//            domains are not matched. For the local part a non-ASCII byte is
//            a word character, so "émile@example.com" holds no address (not
//            "mile@example.com"); after the domain it separates as usual
//            ("kim@example.kr로" -> "kim@example.kr"). Not matched:
//            "user@localhost", "pkg@1.2.3", retina asset names such as
//            "icon@2x.png" (a first domain label of one digit then 'x').
// phone      7-15 digits in one of these shapes (separators ' ', '-' or '.',
//            one at a time, the same one throughout except next to a
//            parenthesized group and after an international country code):
//              +CC then groups ("+1 415 555 2671", "+44 20 7946 0958",
//                "+82-10-1234-5678", "+44 (0)20 7946 0958", "+14155552671");
//                the country code is 1-3 digits, does not start with 0 and is
//                not followed by '.' ("+3.140000" is a number).
//              North American: [1 ]AAA-EEE-NNNN, (AAA) EEE-NNNN, AAA.EEE.NNNN,
//                AAA EEE NNNN, with area code AAA starting 2-9.
//              National with a trunk 0: 0A[A[A]]-XXX[X]-XXXX
//                ("010-1234-5678", "02-123-4567", "020 7946 0958"),
//                0AA[A[A]] XXXXXX[XX] ("07911 123456"), and the Korean mobile
//                form written solid, "01012345678".
//            Not matched: plain digit strings without '+' (order numbers,
//            timestamps), dates, versions, times, prices, short numbers.
// credit_card 13-19 digits, solid or in groups with one kind of separator
//            (single ' ' or '-'): 4-4-4-4 (a last group of 1-4 digits after
//            groups of 4), 4-6-5, 4-6-4. The Luhn check must pass and the
//            prefix and length must belong to a known network: Visa 4
//            (13/16/19), Mastercard 51-55 and 2221-2720 (16), Amex 34/37 (15),
//            Discover 6011/644-649/65 (16-19), JCB 3528-3589 (16-19), Diners
//            300-305/36/38/39 (14-19), UnionPay 62 (16-19). When trailing
//            space-separated digits spoil the number ("4111 1111 1111 1111
//            12/27"), the longest valid leading part is taken.
// iban       2-letter country code, 2 check digits, then the BBAN, with the
//            length registered for that country (about 80 countries); solid
//            ("DE89370400440532013000") or in groups of 4 separated by single
//            spaces ("DE89 3704 0044 0532 0130 00"). Upper case only. The
//            ISO 7064 mod-97 remainder must be 1.
// us_ssn     AAA-GG-SSSS or AAA GG SSSS (the same separator twice; 9 solid
//            digits are not matched). Area not 000, 666 or 900-999; group not
//            00; serial not 0000.
// kr_rrn     YYMMDD-GNNNNNN with a '-' (13 solid digits are not matched): a
//            real calendar date (leap years included) and a gender/century
//            digit G of 1-8 (1,2,5,6: 1900s; 3,4,7,8: 2000s). The check digit
//            is NOT required: numbers issued since October 2020 end in random
//            digits, so requiring it would miss every new number.
// ipv4       Four dotted decimal octets 0-255, no leading zeros ("01" is not an
//            octet). Not part of a longer dotted name or number: "1.2.3.4.5",
//            "v1.2.3.4" and "a.1.2.3.4" hold no address. Four single digits
//            ("1.8.1.4") read as a version and are not matched; other
//            four-part versions and section numbers ("1.7.12.2") cannot be
//            told from addresses and are. A port or prefix length after it is
//            left out ("10.0.0.1:8080" -> "10.0.0.1").
// ipv6       RFC 4291 text forms: eight groups of 1-4 hex digits, or fewer
//            with one "::", optionally ending in a dotted IPv4 address
//            ("::ffff:192.0.2.1"). Must contain a decimal digit (so C++ names
//            like "Abc::Def" are not addresses) and is not matched when glued
//            to letters, digits or '.' ("std::map", "12:30:45" never match).
//            A zone ("%eth0"), brackets and ports are not part of the match.
// api_key    Known prefixes, with the body in the key's alphabet (at most 300
//            characters) and not glued to a letter or digit:
//              sk-ant-...              Anthropic (20+ of [A-Za-z0-9_-])
//              sk-proj-..., sk-...     OpenAI (20+ of [A-Za-z0-9_-]; the bare
//                                      "sk-" form needs lower and upper case
//                                      and a digit, so "sk-learn-..." phrases
//                                      are not keys)
//              AKIA/ASIA + 16 [A-Z0-9] AWS access key id
//              ghp_ gho_ ghu_ ghs_ ghr_ + 36+ [A-Za-z0-9]; github_pat_ + 22+
//                                      [A-Za-z0-9_]  GitHub
//              xoxb- xoxp- xoxa- xoxr- + 10+ [A-Za-z0-9-] with a digit  Slack
//              AIza + 35 [A-Za-z0-9_-] Google
//              glpat- + 20+ [A-Za-z0-9_-]  GitLab
//              sk_/rk_/pk_ + live_/test_ + 16+ [A-Za-z0-9]  Stripe
//              hf_ + 30+ [A-Za-z0-9]   Hugging Face
//              JSON Web Tokens         eyJ<header>.eyJ<payload>.<signature>,
//                                      base64url, header and payload 15+
//                                      chars, the signature possibly empty
//              "-----BEGIN <...>PRIVATE KEY[ BLOCK]-----" up to and including
//                                      the next "-----END ...-----" marker; if
//                                      there is none (truncated output), up to
//                                      the end of the base64 body.
// secret     Any other credential-looking token: a maximal run of
//            [A-Za-z0-9+/_-] (plus up to two '=' of base64 padding) of 20-256
//            characters — or, when the run is a path or URL tail (it has an
//            empty '/'-separated segment or one of 2+ lower-case letters only,
//            "github.com/org/repo/commit/<sha>"), one '/'-separated segment of
//            20-256 characters — that
//              - has both lower- and upper-case letters, and digits or
//                symbols (one-case tokens are names: snake_case, UPPER_SNAKE,
//                kebab-case; random text is mixed case);
//              - has Shannon entropy >= 4.0 bits/char; a token of n chars
//                has at most log2(n) (4.32 at 20), so random tokens of 20-25
//                chars often fall short of 4.0 and for them the bar is
//                log2(n) - 0.7 (3.62 at 20);
//              - is not hex (all letters a-f): git SHAs, digests and UUIDs are
//                identifiers, not credentials;
//              - is not symbol-separated words (3+ symbols, more than one per
//                8 chars: paths, snake_case and kebab-case names);
//              - does not read like English: when it has 4+ adjacent letter
//                pairs inside words, fewer than 75% of them may be common
//                English bigrams (so "HTTP_Request_Handler2" and mangled C++
//                names are not secrets, random base64 is);
//              - is not a sequence: fewer than a quarter of adjacent pairs may
//                be neighbours like "ab", "98" ("abcdef...0123456789_");
//              - is not a subresource-integrity digest ("sha384-<base64>").
//            Longer runs are data (images), not secrets. Base64 bodies of
//            certificates and public keys are indistinguishable from key
//            material and are reported.
#ifndef BASTION_PII_H_
#define BASTION_PII_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace bastion {

enum class PiiKind : uint8_t {
  kEmail,
  kPhone,
  kCreditCard,
  kIban,
  kUsSsn,
  kKrRrn,
  kIpv4,
  kIpv6,
  kApiKey,
  kSecret,
};
inline constexpr int kPiiKindCount = 10;

// "email", "phone", "credit_card", "iban", "us_ssn", "kr_rrn", "ipv4", "ipv6",
// "api_key", "secret". PiiKindFromName accepts exactly these (lower case) and
// returns nullopt for anything else.
std::string_view PiiKindName(PiiKind kind);
std::optional<PiiKind> PiiKindFromName(std::string_view name);

// A set of kinds, one bit per PiiKind: PiiKindBit(a) | PiiKindBit(b).
using PiiKinds = uint32_t;
constexpr PiiKinds PiiKindBit(PiiKind kind) { return PiiKinds{1} << static_cast<unsigned>(kind); }
inline constexpr PiiKinds kAllPii = (PiiKinds{1} << kPiiKindCount) - 1;
constexpr bool HasPiiKind(PiiKinds kinds, PiiKind kind) { return (kinds & PiiKindBit(kind)) != 0; }

struct PiiMatch {
  PiiKind kind;
  size_t start;  // byte offsets into the scanned text: [start, end)
  size_t end;

  friend bool operator==(const PiiMatch&, const PiiMatch&) = default;
};

// All matches of the requested kinds, sorted by start and non-overlapping
// (see the contract at the top). Kinds outside `kinds` are not searched at all,
// so asking for fewer kinds is faster; overlaps are resolved among the
// requested kinds only. Bits above kAllPii are ignored.
std::vector<PiiMatch> FindPii(std::string_view text, PiiKinds kinds = kAllPii);

enum class MaskStyle : uint8_t {
  // Each match becomes its kind's name in brackets: "[EMAIL]", "[PHONE]",
  // "[CREDIT_CARD]", "[IBAN]", "[US_SSN]", "[KR_RRN]", "[IPV4]", "[IPV6]",
  // "[API_KEY]", "[SECRET]".
  kLabel,
  // Cards, phones, IBANs, SSNs and RRNs keep their layout and their last 4
  // letters or digits; every earlier letter or digit becomes '*', separators
  // stay: "**** **** **** 1111", "+* (***) ***-2671", "***-**-6789",
  // "******-***4567". The other kinds (emails, addresses, keys, secrets) get
  // the label, as with kLabel: a partial key or address still identifies.
  kPartial,
};

// Returns `text` with every match replaced as `style` says. `matches` should be
// FindPii's result for this text: sorted by start and non-overlapping. A match
// that is empty, reaches past the end of the text, or overlaps or comes before
// an earlier one is ignored (its text is kept), so a bad list never corrupts
// the output.
std::string MaskPii(std::string_view text, const std::vector<PiiMatch>& matches,
                    MaskStyle style = MaskStyle::kLabel);

}  // namespace bastion

#endif  // BASTION_PII_H_
