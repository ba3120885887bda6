// Number-shaped PII: credit cards, US SSNs, Korean RRNs, IPv4 addresses, phone
// numbers and IBANs. The rules are documented in bastion/pii.h.
#include <algorithm>

#include "pii/detectors.h"

namespace bastion::pii {
namespace {

// No detector accepts a run of more digits than this (cards have at most 19),
// so scans stop there and a longer run reads as "glued".
constexpr size_t kMaxGroupDigits = 20;

bool IsNumberSeparator(char c) { return c == '-' || c == '.' || c == '/'; }

// A number ending at `end` continues on its right: a letter or digit, or one of
// "-./" then a digit ("4111...1111-22", "...1111.5").
bool NumberGluedRight(std::string_view text, size_t end) {
  if (end >= text.size()) return false;
  if (IsAlnum(text[end])) return true;
  return IsNumberSeparator(text[end]) && IsAt(text, end + 1, kDigit);
}

// The value of the (at most 9) digits text[begin, end).
int ParseDigits(std::string_view text, size_t begin, size_t end) {
  int v = 0;
  for (size_t i = begin; i < end; ++i) v = v * 10 + (text[i] - '0');
  return v;
}

// --- credit cards ---

bool LuhnValid(const char* digits, size_t n) {
  int sum = 0;
  for (size_t i = 0; i < n; ++i) {
    int d = digits[n - 1 - i] - '0';
    if (i % 2 == 1) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
  }
  return sum % 10 == 0;
}

bool KnownCardNetwork(const char* d, size_t n) {
  const auto prefix = [d](int len) {
    int v = 0;
    for (int i = 0; i < len; ++i) v = v * 10 + (d[i] - '0');
    return v;
  };
  const int p2 = prefix(2), p3 = prefix(3), p4 = prefix(4);
  if (d[0] == '4') return n == 13 || n == 16 || n == 19;                     // Visa
  if ((p2 >= 51 && p2 <= 55) || (p4 >= 2221 && p4 <= 2720)) return n == 16;  // Mastercard
  if (p2 == 34 || p2 == 37) return n == 15;                                  // Amex
  if (p4 == 6011 || p2 == 65 || (p3 >= 644 && p3 <= 649)) return n >= 16;    // Discover
  if (p4 >= 3528 && p4 <= 3589) return n >= 16;                              // JCB
  if ((p3 >= 300 && p3 <= 305) || p2 == 36 || p2 == 38 || p2 == 39) {        // Diners
    return n >= 14;
  }
  if (p2 == 62) return n >= 16;  // UnionPay
  return false;
}

// Whether the first k groups are laid out like a card number: 13-19 digits,
// solid, or grouped 4-4-...-4-x (x of 1-4), 4-6-5 or 4-6-4 with one separator.
bool CardLayout(const DigitGroups& g, int k) {
  size_t total = 0;
  for (int j = 0; j < k; ++j) total += g.digits(j);
  if (total < 13 || total > 19) return false;
  if (k == 1) return true;
  const char sep = g.sep_after[0];
  if (sep != ' ' && sep != '-') return false;
  for (int j = 1; j < k - 1; ++j) {
    if (g.sep_after[j] != sep) return false;
  }
  bool fours = true;
  for (int j = 0; j < k - 1; ++j) fours = fours && g.digits(j) == 4;
  if (fours && k >= 4) return true;  // the total bounds the last group to 1-4
  return k == 3 && g.digits(0) == 4 && g.digits(1) == 6 &&
         (g.digits(2) == 5 || g.digits(2) == 4);
}

// --- phone numbers ---

constexpr int kMaxPhoneGroups = 8;
constexpr size_t kMaxPhoneDigits = 15;  // E.164

struct PhoneGroup {
  size_t begin;     // first digit
  size_t end;       // after the last digit, or after ')' for a paren group
  size_t digits;
  bool paren;
  char sep_before;  // ' ', '-', '.', or 0 next to a paren group
};

// Reads digit groups and "(digits)" groups from `pos`, joined by one ' ', '-'
// or '.', or directly next to a paren group ("+44(0)20", "(415)555-2671").
int ReadPhoneGroups(std::string_view text, size_t pos, PhoneGroup* groups) {
  const size_t n = text.size();
  int count = 0;
  char sep = 0;
  while (count < kMaxPhoneGroups) {
    PhoneGroup g;
    if (text[pos] == '(') {
      size_t q = pos + 1;
      while (q < n && IsDigit(text[q]) && q - pos <= 5) ++q;
      const size_t digits = q - pos - 1;
      if (digits == 0 || digits > 4 || !CharAt(text, q, ')')) break;
      g = {pos + 1, q + 1, digits, true, sep};
      pos = q + 1;
    } else if (IsDigit(text[pos])) {
      size_t q = pos;
      while (q < n && IsDigit(text[q]) && q - pos <= kMaxPhoneDigits) ++q;
      if (q - pos > kMaxPhoneDigits) break;
      g = {pos, q, q - pos, false, sep};
      pos = q;
    } else {
      break;
    }
    groups[count++] = g;
    if (pos >= n) break;
    const char c = text[pos];
    if ((c == ' ' || c == '-' || c == '.') &&
        (IsAt(text, pos + 1, kDigit) || CharAt(text, pos + 1, '('))) {
      sep = c;
      ++pos;
    } else if (c == '(' || (g.paren && IsDigit(c))) {
      sep = 0;
    } else {
      break;
    }
  }
  return count;
}

// The shapes listed under "phone" in bastion/pii.h, for the first k groups.
bool ValidPhone(std::string_view text, const PhoneGroup* g, int k, bool plus) {
  size_t total = 0;
  int parens = 0;
  for (int j = 0; j < k; ++j) {
    total += g[j].digits;
    parens += g[j].paren;
  }
  if (total < 7 || total > kMaxPhoneDigits || parens > 1) return false;
  // One separator throughout, except next to a paren group and after a
  // country code ("+1 415-555-2671", "(415) 555-2671").
  char common = 0;
  for (int j = 1; j < k; ++j) {
    if (g[j].paren || g[j - 1].paren || (plus && j == 1)) continue;
    if (g[j].sep_before == 0) return false;
    if (common == 0) common = g[j].sep_before;
    if (g[j].sep_before != common) return false;
  }
  const char first = text[g[0].begin];
  if (plus) {
    if (g[0].paren || first == '0') return false;
    if (k == 1) return true;
    if (g[0].digits > 3) return false;  // country codes have 1-3 digits
    if (g[1].sep_before == '.') return false;  // "+3.140000" is a number
    int single_digit_groups = 0;
    for (int j = 1; j < k; ++j) single_digit_groups += !g[j].paren && g[j].digits == 1;
    return single_digit_groups <= 1;
  }
  // North American: [1 ]AAA EEE NNNN, area code starting 2-9.
  const int a = (k == 4 && !g[0].paren && g[0].digits == 1 && first == '1') ? 1 : 0;
  if (k - a == 3 && g[a].digits == 3 && text[g[a].begin] >= '2' && !g[a + 1].paren &&
      g[a + 1].digits == 3 && !g[a + 2].paren && g[a + 2].digits == 4) {
    return true;
  }
  // National numbers with a trunk 0 (Korea, UK, much of Europe and Asia).
  if (first != '0' || g[0].digits < 2 || text[g[0].begin + 1] == '0') return false;
  if (k == 3) {
    return g[0].digits <= 4 && !g[1].paren && g[1].digits >= 3 && g[1].digits <= 4 &&
           !g[2].paren && g[2].digits == 4;
  }
  if (k == 2) {
    return g[0].digits >= 3 && g[0].digits <= 5 && !g[1].paren && g[1].digits >= 6 &&
           g[1].digits <= 8 && total >= 10 && total <= 11;
  }
  // Korean mobile numbers are often written solid.
  return k == 1 && total == 11 && text.substr(g[0].begin, 3) == "010";
}

// A phone number starting exactly at `start` ('+', '(' or a digit).
size_t MatchPhoneAt(std::string_view text, size_t start) {
  if (text[start] != '(' && NumberGluedLeft(text, start)) return kNoMatch;
  const bool plus = text[start] == '+';
  PhoneGroup groups[kMaxPhoneGroups];
  const int count = ReadPhoneGroups(text, plus ? start + 1 : start, groups);
  // Trailing space-separated digits may belong to the next number; the
  // longest leading part that is a valid phone number wins.
  for (int k = count; k >= 1; --k) {
    if (NumberGluedRight(text, groups[k - 1].end)) continue;
    if (ValidPhone(text, groups, k, plus)) return groups[k - 1].end;
  }
  return kNoMatch;
}

// --- IBAN ---

struct IbanCountry {
  char code[2];
  uint8_t length;
};

// IBAN lengths from the SWIFT IBAN registry.
constexpr IbanCountry kIbanCountries[] = {
    {{'A', 'D'}, 24}, {{'A', 'E'}, 23}, {{'A', 'L'}, 28}, {{'A', 'T'}, 20}, {{'A', 'Z'}, 28},
    {{'B', 'A'}, 20}, {{'B', 'E'}, 16}, {{'B', 'G'}, 22}, {{'B', 'H'}, 22}, {{'B', 'R'}, 29},
    {{'B', 'Y'}, 28}, {{'C', 'H'}, 21}, {{'C', 'R'}, 22}, {{'C', 'Y'}, 28}, {{'C', 'Z'}, 24},
    {{'D', 'E'}, 22}, {{'D', 'K'}, 18}, {{'D', 'O'}, 28}, {{'E', 'E'}, 20}, {{'E', 'G'}, 29},
    {{'E', 'S'}, 24}, {{'F', 'I'}, 18}, {{'F', 'O'}, 18}, {{'F', 'R'}, 27}, {{'G', 'B'}, 22},
    {{'G', 'E'}, 22}, {{'G', 'I'}, 23}, {{'G', 'L'}, 18}, {{'G', 'R'}, 27}, {{'G', 'T'}, 28},
    {{'H', 'R'}, 21}, {{'H', 'U'}, 28}, {{'I', 'E'}, 22}, {{'I', 'L'}, 23}, {{'I', 'Q'}, 23},
    {{'I', 'S'}, 26}, {{'I', 'T'}, 27}, {{'J', 'O'}, 30}, {{'K', 'W'}, 30}, {{'K', 'Z'}, 20},
    {{'L', 'B'}, 28}, {{'L', 'C'}, 32}, {{'L', 'I'}, 21}, {{'L', 'T'}, 20}, {{'L', 'U'}, 20},
    {{'L', 'V'}, 21}, {{'M', 'C'}, 27}, {{'M', 'D'}, 24}, {{'M', 'E'}, 22}, {{'M', 'K'}, 19},
    {{'M', 'R'}, 27}, {{'M', 'T'}, 31}, {{'M', 'U'}, 30}, {{'N', 'L'}, 18}, {{'N', 'O'}, 15},
    {{'P', 'K'}, 24}, {{'P', 'L'}, 28}, {{'P', 'S'}, 29}, {{'P', 'T'}, 25}, {{'Q', 'A'}, 29},
    {{'R', 'O'}, 24}, {{'R', 'S'}, 22}, {{'S', 'A'}, 24}, {{'S', 'C'}, 31}, {{'S', 'E'}, 24},
    {{'S', 'I'}, 19}, {{'S', 'K'}, 24}, {{'S', 'M'}, 27}, {{'S', 'T'}, 25}, {{'S', 'V'}, 28},
    {{'T', 'L'}, 23}, {{'T', 'N'}, 24}, {{'T', 'R'}, 26}, {{'U', 'A'}, 29}, {{'V', 'A'}, 22},
    {{'V', 'G'}, 24}, {{'X', 'K'}, 20},
};
constexpr size_t kMaxIbanLength = 34;

size_t IbanLength(char a, char b) {
  for (const IbanCountry& c : kIbanCountries) {
    if (c.code[0] == a && c.code[1] == b) return c.length;
  }
  return 0;
}

// ISO 7064 MOD 97-10 over the IBAN with its first four characters moved to the
// end and letters read as 10..35.
bool IbanChecksumValid(const char* iban, size_t n) {
  int rem = 0;
  const auto feed = [&rem](char c) {
    rem = c <= '9' ? (rem * 10 + (c - '0')) % 97 : (rem * 100 + (c - 'A' + 10)) % 97;
  };
  for (size_t i = 4; i < n; ++i) feed(iban[i]);
  for (size_t i = 0; i < 4; ++i) feed(iban[i]);
  return rem == 1;
}

}  // namespace

bool NumberGluedLeft(std::string_view text, size_t start) {
  if (start == 0) return false;
  const char c = text[start - 1];
  if (IsAlnum(c)) return true;
  return IsNumberSeparator(c) && start >= 2 && IsDigit(text[start - 2]);
}

DigitGroups ScanDigitGroups(std::string_view text, size_t start) {
  const size_t n = text.size();
  DigitGroups g;
  size_t pos = start;
  while (g.count < DigitGroups::kMax) {
    size_t q = pos;
    while (q < n && IsDigit(text[q]) && q - pos < kMaxGroupDigits) ++q;
    g.begin[g.count] = pos;
    g.end[g.count] = q;
    g.sep_after[g.count] = 0;
    ++g.count;
    if (q < n && (text[q] == ' ' || text[q] == '-' || text[q] == '.') &&
        IsAt(text, q + 1, kDigit)) {
      g.sep_after[g.count - 1] = text[q];
      pos = q + 1;
    } else {
      break;
    }
  }
  return g;
}

size_t MatchCreditCard(std::string_view text, const DigitGroups& g) {
  // Trailing space-separated digits ("... 1111 12/27") may spoil the number;
  // the longest leading part that is a valid card wins.
  for (int k = g.count; k >= 1; --k) {
    if (!CardLayout(g, k) || NumberGluedRight(text, g.end[k - 1])) continue;
    char digits[19];
    size_t n = 0;
    for (int j = 0; j < k; ++j) {
      for (size_t i = g.begin[j]; i < g.end[j]; ++i) digits[n++] = text[i];
    }
    if (KnownCardNetwork(digits, n) && LuhnValid(digits, n)) return g.end[k - 1];
  }
  return kNoMatch;
}

size_t MatchUsSsn(std::string_view text, const DigitGroups& g) {
  if (g.count < 3 || g.digits(0) != 3 || g.digits(1) != 2 || g.digits(2) != 4) return kNoMatch;
  const char sep = g.sep_after[0];
  if ((sep != '-' && sep != ' ') || g.sep_after[1] != sep) return kNoMatch;
  if (NumberGluedRight(text, g.end[2])) return kNoMatch;
  const int area = ParseDigits(text, g.begin[0], g.end[0]);
  const int group = ParseDigits(text, g.begin[1], g.end[1]);
  const int serial = ParseDigits(text, g.begin[2], g.end[2]);
  if (area == 0 || area == 666 || area >= 900 || group == 0 || serial == 0) return kNoMatch;
  return g.end[2];
}

size_t MatchKrRrn(std::string_view text, const DigitGroups& g) {
  if (g.count < 2 || g.digits(0) != 6 || g.digits(1) != 7 || g.sep_after[0] != '-') {
    return kNoMatch;
  }
  if (NumberGluedRight(text, g.end[1])) return kNoMatch;
  const size_t b = g.begin[0];
  const int yy = ParseDigits(text, b, b + 2);
  const int mm = ParseDigits(text, b + 2, b + 4);
  const int dd = ParseDigits(text, b + 4, b + 6);
  const int gender = text[g.begin[1]] - '0';
  if (gender < 1 || gender > 8 || mm < 1 || mm > 12 || dd < 1) return kNoMatch;
  // 1, 2, 5, 6: born in the 1900s (5, 6 foreigners); 3, 4, 7, 8: the 2000s.
  const bool nineteen = gender == 1 || gender == 2 || gender == 5 || gender == 6;
  const int year = (nineteen ? 1900 : 2000) + yy;
  static constexpr int kDaysInMonth[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  int days = kDaysInMonth[mm - 1];
  if (mm == 2 && year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)) days = 29;
  return dd <= days ? g.end[1] : kNoMatch;
}

size_t MatchDottedQuad(const DigitGroups& g, std::string_view text) {
  if (g.count < 4) return kNoMatch;
  for (int j = 0; j < 4; ++j) {
    const size_t digits = g.digits(j);
    if (digits < 1 || digits > 3 || (j < 3 && g.sep_after[j] != '.')) return kNoMatch;
    if (digits > 1 && text[g.begin[j]] == '0') return kNoMatch;  // leading zero
    if (ParseDigits(text, g.begin[j], g.end[j]) > 255) return kNoMatch;
  }
  return g.end[3];
}

size_t MatchIpv4(std::string_view text, const DigitGroups& g) {
  const size_t end = MatchDottedQuad(g, text);
  if (end == kNoMatch) return kNoMatch;
  // Not inside a longer dotted name or number ("a.1.2.3.4", "1.2.3.4.5").
  const size_t start = g.begin[0];
  if (start > 0 && (IsAlnum(text[start - 1]) ||
                    (text[start - 1] == '.' && start >= 2 && IsAlnum(text[start - 2])))) {
    return kNoMatch;
  }
  if (IsAt(text, end, kAlnum) || (CharAt(text, end, '.') && IsAt(text, end + 1, kAlnum))) {
    return kNoMatch;
  }
  // Four single digits read as a version ("1.8.1.4"), not as an address.
  if (end - start == 7) return kNoMatch;
  return end;
}

size_t MatchPhone(std::string_view text, size_t digit_start, size_t* start) {
  size_t s = digit_start;
  if (s > 0 && (text[s - 1] == '+' || text[s - 1] == '(')) --s;
  size_t end = MatchPhoneAt(text, s);
  // "(555-123-4567)": the parenthesis is not part of the number.
  if (end == kNoMatch && text[s] == '(') {
    s = digit_start;
    end = MatchPhoneAt(text, s);
  }
  *start = s;
  return end;
}

size_t MatchIban(std::string_view text, size_t start) {
  const size_t n = text.size();
  if (!IsAt(text, start + 1, kUpper) || !IsAt(text, start + 2, kDigit) ||
      !IsAt(text, start + 3, kDigit)) {
    return kNoMatch;
  }
  const size_t length = IbanLength(text[start], text[start + 1]);
  if (length == 0) return kNoMatch;
  constexpr uint16_t kIbanChar = kUpper | kDigit;
  char iban[kMaxIbanLength];
  size_t run = start;
  while (run < n && Is(text[run], kIbanChar) && run - start <= length) ++run;
  size_t end;
  if (run - start == length) {  // solid
    std::copy(text.data() + start, text.data() + run, iban);
    end = run;
  } else if (run - start == 4) {  // "DE89 3704 0044 0532 0130 00"
    std::copy(text.data() + start, text.data() + run, iban);
    size_t count = 4;
    size_t pos = run;
    while (count < length) {
      if (!CharAt(text, pos, ' ')) return kNoMatch;
      size_t q = pos + 1;
      while (q - pos <= 4 && IsAt(text, q, kIbanChar)) ++q;
      const size_t got = q - pos - 1;
      // Only the last group may be shorter than 4; none may run past the end.
      if (got == 0 || count + got > length || (got < 4 && count + got < length)) {
        return kNoMatch;
      }
      std::copy(text.data() + pos + 1, text.data() + q, iban + count);
      count += got;
      pos = q;
    }
    end = pos;
  } else {
    return kNoMatch;
  }
  if (IsAt(text, end, kAlnum)) return kNoMatch;
  return IbanChecksumValid(iban, length) ? end : kNoMatch;
}

}  // namespace bastion::pii
