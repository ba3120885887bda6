// Glob, domain and URL-host matching: the pattern language of permissions.yaml,
// also offered to Lua policies.
//
//   bastion::GlobMatch("order/*", "order/42");            // true
//   bastion::GlobMatch("order/*", "order/42/items");      // false: '*' stops at '/'
//   bastion::GlobMatch("order/**", "order/42/items");     // true
//   bastion::GlobMatch("report-20[0-9][0-9]?", "report-2024a");  // true
//
//   bastion::DomainMatch("*.example.com", "api.eu.Example.com.");  // true
//   bastion::DomainMatch("*.example.com", "example.com");          // false: apex
//
//   bastion::HostOfUrl("https://bob@API.Example.com:8443/v1?q=1");  // "api.example.com"
//   bastion::HostOfUrl("http://[2001:DB8::1]/");                    // "2001:db8::1"
//   bastion::HostOfUrl("not a url");                                // nullopt
//
// Glob syntax (GlobMatch, ValidateGlob):
//   *        any run of characters, possibly empty, except '/'
//   **       any run of characters, possibly empty, including '/'. Three or
//            more stars in a row are the same as two. "a/**/b" does not match
//            "a/b" (the two slashes around ** are literal).
//   ?        exactly one character, not '/'
//   [abc]    one character of the set; ranges [a-z]; negation [!x] or [^x].
//            ']' first in the set and '-' first or last are literal. A class
//            never matches '/' (and may not list it).
//   \c       the character c literally (\*, \?, \[, \\, ...)
//   other    itself; matching is case-sensitive
// A character is one UTF-8 sequence (a byte that is not part of a well-formed
// sequence counts as one character on its own), so '?' matches "é" whole.
// The whole text must match, not a part of it.
//
// Cost: the matcher is the two-pointer algorithm with star backtracking (one
// backtrack point for the last '*', one for the last '**'), so it never
// backtracks exponentially: "a*a*a*a*a*b" against 100 000 'a's takes a few
// milliseconds at most, and ordinary patterns run in time linear in the text.
//
// Thread safety: every function here is pure and may run on any thread.
#ifndef BASTION_GLOB_H_
#define BASTION_GLOB_H_

#include <optional>
#include <string>
#include <string_view>

#include "bastion/status.h"

namespace bastion {

// True if `text` matches the glob `pattern` (syntax above). A malformed
// pattern (see ValidateGlob) matches nothing: it fails closed.
bool GlobMatch(std::string_view pattern, std::string_view text);

// OK if `pattern` is a well-formed glob; otherwise InvalidArgument saying what
// is wrong and at which byte, e.g. "unterminated character class at offset 6".
// Malformed: a trailing lone '\', an unterminated '[', an empty set, a range
// whose end is below its start ([z-a]), a '/' inside [...].
Status ValidateGlob(std::string_view pattern);

// True if `pattern` uses any glob syntax ('*', '?', '[' or '\'); false if it
// can only ever match itself, so exact comparison (or hashing) is enough.
bool IsGlobPattern(std::string_view pattern);

// True if `host` matches the domain `pattern`:
//   "*"               any host (names and IP literals alike)
//   "*.example.com"   any subdomain of example.com at any depth
//                     (a.example.com, a.b.example.com), not example.com itself
//   "example.com"     exactly example.com
// Case-insensitive (ASCII); one trailing dot on either side is ignored
// ("example.com." is example.com). IPv6 literals compare without brackets:
// pattern "::1" or "[::1]" matches host "::1" or "[::1]". An empty host matches
// nothing, not even "*".
bool DomainMatch(std::string_view pattern, std::string_view host);

// OK if `pattern` is a usable domain pattern: "*", or an optional "*." prefix
// followed by a host name of letters, digits, '-' and '_' in dot-separated
// non-empty labels (one trailing dot allowed), or an IPv4 or bracketed or bare
// IPv6 literal (no "*." prefix then). InvalidArgument otherwise, saying why.
Status ValidateDomainPattern(std::string_view pattern);

// The host of an absolute URL "scheme://[userinfo@]host[:port][/path][?q][#f]",
// normalized (NormalizeHost): lowercase, without a trailing dot, IPv6 literals
// without their brackets. nullopt when the URL is not of that shape or the
// host is suspicious, so network rules fail closed:
//   no "scheme://", an empty host, a port that is not 0..65535 digits,
//   characters outside [A-Za-z0-9.-_~] in a name (percent-encoding included),
//   a malformed bracketed IPv6 literal, whitespace or control characters
//   anywhere, or a '\' anywhere before the path (browsers read it as '/',
//   which would make them see another host than this function).
// Userinfo ends at the last '@' before the path, as browsers do.
std::optional<std::string> HostOfUrl(std::string_view url);

// Lowercases (ASCII), drops one trailing dot and the brackets around an IPv6
// literal: "API.Example.COM." -> "api.example.com", "[::1]" -> "::1".
std::string NormalizeHost(std::string_view host);

}  // namespace bastion

#endif  // BASTION_GLOB_H_
