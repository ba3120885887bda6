#include "policy/lua_patterns.h"

#include <cctype>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <string.h>  // memmem
#include <utility>

#include <lua.hpp>

// Every function here may raise a Lua error (longjmp), so none holds an
// object with a destructor: the state lives in a plain struct on the stack.

namespace bastion::policy {
namespace {

constexpr int kMaxCaptures = 32;  // as LUA_MAXCAPTURES
constexpr int kMaxDepth = 200;    // nested matches before "pattern too complex"
constexpr ptrdiff_t kUnfinished = -1;
constexpr ptrdiff_t kPosition = -2;
constexpr char kEsc = '%';

struct Capture {
  const char* init;
  ptrdiff_t len;  // >= 0, kUnfinished or kPosition
};

struct Matcher {
  lua_State* L;
  const char* src_init;
  const char* src_end;
  const char* p_end;
  int depth;  // matches still allowed to nest
  int level;  // captures open or closed so far
  Capture capture[kMaxCaptures];
  PatternCharge charge;
  int64_t left;  // steps before the next charge
};

void InitMatcher(Matcher* m, lua_State* L, const char* s, size_t ls, const char* p, size_t lp,
                 PatternCharge charge) {
  m->L = L;
  m->src_init = s;
  m->src_end = s + ls;
  m->p_end = p + lp;
  m->depth = kMaxDepth;
  m->level = 0;
  m->charge = charge;
  m->left = kPatternChargeInterval;
}

void Restart(Matcher* m) {
  m->level = 0;
  m->depth = kMaxDepth;
}

[[gnu::noinline]] void Refill(Matcher* m) {
  const int64_t used = kPatternChargeInterval - m->left;
  m->left = kPatternChargeInterval;
  m->charge(m->L, used);
}

inline void Charge(Matcher* m, int64_t n) {
  m->left -= n;
  if (m->left < 0) Refill(m);
}

// Charges what is left over; for the end of a call.
void Settle(Matcher* m) {
  if (m->left < kPatternChargeInterval) Refill(m);
}

// Raises a Lua error, the work so far charged first: a policy catching the
// error with pcall must not get that work for free.
template <typename... Args>
[[noreturn]] void Fail(Matcher* m, const char* fmt, Args... args) {
  Settle(m);
  luaL_error(m->L, fmt, args...);
  std::abort();  // luaL_error does not return
}

inline unsigned char U(char c) { return static_cast<unsigned char>(c); }

bool InClass(int c, int cls) {
  bool in;
  switch (std::tolower(cls)) {
    case 'a': in = std::isalpha(c); break;
    case 'c': in = std::iscntrl(c); break;
    case 'd': in = std::isdigit(c); break;
    case 'g': in = std::isgraph(c); break;
    case 'l': in = std::islower(c); break;
    case 'p': in = std::ispunct(c); break;
    case 's': in = std::isspace(c); break;
    case 'u': in = std::isupper(c); break;
    case 'w': in = std::isalnum(c); break;
    case 'x': in = std::isxdigit(c); break;
    case 'z': in = c == 0; break;  // deprecated, but still in Lua 5.4
    default: return cls == c;  // an escaped character stands for itself
  }
  return std::isupper(cls) ? !in : in;
}

// Whether `c` is in the set [...] spanning `p` (at '[') to `close` (at ']').
bool InSet(int c, const char* p, const char* close) {
  bool negate = false;
  ++p;
  if (*p == '^') {
    negate = true;
    ++p;
  }
  for (; p < close; ++p) {
    if (*p == kEsc) {
      ++p;
      if (InClass(c, U(*p))) return !negate;
    } else if (p[1] == '-' && p + 2 < close) {
      if (U(p[0]) <= c && c <= U(p[2])) return !negate;
      p += 2;
    } else if (U(*p) == c) {
      return !negate;
    }
  }
  return negate;
}

// The end of the single-character class starting at `p`.
const char* ItemEnd(Matcher* m, const char* p) {
  const char c = *p++;
  if (c == kEsc) {
    if (p >= m->p_end) Fail(m, "malformed pattern (ends with '%%')");
    return p + 1;
  }
  if (c == '[') {
    if (p < m->p_end && *p == '^') ++p;
    // The first character of a set is never its end: "[]]" is a set of ']'.
    do {
      if (p >= m->p_end) Fail(m, "malformed pattern (missing ']')");
      const char d = *p++;
      if (d == kEsc && p < m->p_end) ++p;
    } while (p >= m->p_end || *p != ']');
    return p + 1;
  }
  return p;
}

// Whether the subject character at `s` matches the item [p, ep).
inline bool ItemMatches(Matcher* m, const char* s, const char* p, const char* ep) {
  Charge(m, ep - p);
  if (s >= m->src_end) return false;
  const int c = U(*s);
  switch (*p) {
    case '.': return true;
    case kEsc: return InClass(c, U(p[1]));
    case '[': return InSet(c, p, ep - 1);
    default: return U(*p) == c;
  }
}

const char* Match(Matcher* m, const char* s, const char* p);

// %bxy at `p` (just after "%b").
const char* MatchBalance(Matcher* m, const char* s, const char* p) {
  if (p + 1 >= m->p_end) Fail(m, "malformed pattern (missing arguments to '%%b')");
  if (s >= m->src_end || *s != p[0]) return nullptr;
  const char open = p[0], close = p[1];
  int depth = 1;
  const char* start = s;
  while (++s < m->src_end) {
    if (*s == close) {
      if (--depth == 0) {
        Charge(m, s - start);
        return s + 1;
      }
    } else if (*s == open) {
      ++depth;
    }
  }
  Charge(m, s - start);
  return nullptr;
}

// %1 .. %9: the text of an earlier, closed capture.
const char* MatchBackReference(Matcher* m, const char* s, int digit) {
  const int i = digit - '1';
  if (i < 0 || i >= m->level || m->capture[i].len == kUnfinished) {
    Fail(m, "invalid capture index %%%d", i + 1);
  }
  const ptrdiff_t len = m->capture[i].len;
  Charge(m, len > 0 ? len + 1 : 1);
  if (len < 0) return nullptr;  // a position capture matches no text
  if (m->src_end - s >= len && std::memcmp(m->capture[i].init, s, static_cast<size_t>(len)) == 0) {
    return s + len;
  }
  return nullptr;
}

// Greedy: as many repetitions of [p, ep) as possible, then fewer.
const char* Longest(Matcher* m, const char* s, const char* p, const char* ep) {
  ptrdiff_t n = 0;
  while (ItemMatches(m, s + n, p, ep)) ++n;
  for (; n >= 0; --n) {
    if (const char* r = Match(m, s + n, ep + 1)) return r;
  }
  return nullptr;
}

// Lazy: as few repetitions of [p, ep) as possible, then more.
const char* Shortest(Matcher* m, const char* s, const char* p, const char* ep) {
  for (;;) {
    if (const char* r = Match(m, s, ep + 1)) return r;
    if (!ItemMatches(m, s, p, ep)) return nullptr;
    ++s;
  }
}

const char* OpenCapture(Matcher* m, const char* s, const char* p, ptrdiff_t what) {
  if (m->level >= kMaxCaptures) Fail(m, "too many captures");
  m->capture[m->level] = {s, what};
  ++m->level;
  const char* r = Match(m, s, p);
  if (r == nullptr) --m->level;
  return r;
}

const char* CloseCapture(Matcher* m, const char* s, const char* p) {
  int i = m->level - 1;
  while (i >= 0 && m->capture[i].len != kUnfinished) --i;
  if (i < 0) Fail(m, "invalid pattern capture");
  m->capture[i].len = s - m->capture[i].init;
  const char* r = Match(m, s, p);
  if (r == nullptr) m->capture[i].len = kUnfinished;
  return r;
}

// Matches the pattern from `p` to its end against the subject from `s`;
// returns the end of the match or nullptr.
const char* Match(Matcher* m, const char* s, const char* p) {
  if (m->depth-- == 0) Fail(m, "pattern too complex");
  Charge(m, 1);  // every item charges its own tests below
  for (;;) {
    if (p == m->p_end) break;
    // The items that are more than one character class.
    if (*p == '(') {
      if (p + 1 < m->p_end && p[1] == ')') {
        s = OpenCapture(m, s, p + 2, kPosition);
      } else {
        s = OpenCapture(m, s, p + 1, kUnfinished);
      }
      break;
    }
    if (*p == ')') {
      s = CloseCapture(m, s, p + 1);
      break;
    }
    if (*p == '$' && p + 1 == m->p_end) {
      if (s != m->src_end) s = nullptr;
      break;
    }
    if (*p == kEsc && p + 1 < m->p_end) {
      const char what = p[1];
      if (what == 'b') {
        s = MatchBalance(m, s, p + 2);
        if (s == nullptr) break;
        p += 4;
        continue;
      }
      if (what == 'f') {
        p += 2;
        if (p >= m->p_end || *p != '[') Fail(m, "missing '[' after '%%f' in pattern");
        const char* ep = ItemEnd(m, p);
        Charge(m, ep - p);
        const int before = s == m->src_init ? 0 : U(s[-1]);
        const int after = s < m->src_end ? U(*s) : 0;
        if (!InSet(before, p, ep - 1) && InSet(after, p, ep - 1)) {
          p = ep;
          continue;
        }
        s = nullptr;
        break;
      }
      if (what >= '0' && what <= '9') {
        s = MatchBackReference(m, s, U(what));
        if (s == nullptr) break;
        p += 2;
        continue;
      }
    }
    // A single character class, maybe with a quantifier.
    const char* ep = ItemEnd(m, p);
    const char quantifier = ep < m->p_end ? *ep : '\0';
    if (!ItemMatches(m, s, p, ep)) {
      if (quantifier == '*' || quantifier == '?' || quantifier == '-') {
        p = ep + 1;  // zero repetitions
        continue;
      }
      s = nullptr;
      break;
    }
    if (quantifier == '?') {
      if (const char* r = Match(m, s + 1, ep + 1)) {
        s = r;
        break;
      }
      p = ep + 1;
      continue;
    }
    if (quantifier == '+') {
      s = Longest(m, s + 1, p, ep);
      break;
    }
    if (quantifier == '*') {
      s = Longest(m, s, p, ep);
      break;
    }
    if (quantifier == '-') {
      s = Shortest(m, s, p, ep);
      break;
    }
    ++s;
    p = ep;
  }
  ++m->depth;
  return s;
}

// Pushes capture `i` (or the whole match [s, e) when there are none).
void PushCapture(Matcher* m, int i, const char* s, const char* e) {
  if (i >= m->level) {
    if (i != 0) Fail(m, "invalid capture index %%%d", i + 1);
    lua_pushlstring(m->L, s, static_cast<size_t>(e - s));
    return;
  }
  const Capture& c = m->capture[i];
  if (c.len == kUnfinished) Fail(m, "unfinished capture");
  if (c.len == kPosition) {
    lua_pushinteger(m->L, static_cast<lua_Integer>(c.init - m->src_init) + 1);
  } else {
    lua_pushlstring(m->L, c.init, static_cast<size_t>(c.len));
  }
}

// Pushes every capture, or the whole match if there are none and `s` is set.
int PushCaptures(Matcher* m, const char* s, const char* e) {
  const int n = (m->level == 0 && s != nullptr) ? 1 : m->level;
  luaL_checkstack(m->L, n, "too many captures");
  for (int i = 0; i < n; ++i) PushCapture(m, i, s, e);
  return n;
}

PatternCharge ChargeOf(lua_State* L, int upvalue) {
  return reinterpret_cast<PatternCharge>(lua_touserdata(L, lua_upvalueindex(upvalue)));
}

// A 1-based, possibly negative position as a 1-based offset in [1, len + 1]
// or past it (positions past the end stay past it).
size_t StartOffset(lua_Integer pos, size_t len) {
  if (pos > 0) return static_cast<size_t>(pos);
  if (pos == 0) return 1;
  if (pos < -static_cast<lua_Integer>(len)) return 1;
  return len + static_cast<size_t>(pos) + 1;
}

bool HasSpecials(const char* p, size_t lp) {
  for (size_t i = 0; i < lp; ++i) {
    switch (p[i]) {
      case '^': case '$': case '*': case '+': case '?': case '.': case '(': case '[': case '%':
      case '-':
        return true;
      default:
        break;
    }
  }
  return false;
}

// The character every match of the unanchored pattern must start with (a
// literal first item that cannot repeat zero times), or -1. Searches skip to
// it with memchr instead of trying every position.
int FirstLiteral(const char* p, size_t lp) {
  if (lp == 0) return -1;
  switch (p[0]) {
    case '^': case '$': case '*': case '+': case '?': case '.': case '(': case ')': case '[':
    case '%': case '-':
      return -1;
    default:
      break;
  }
  if (lp > 1 && (p[1] == '*' || p[1] == '?' || p[1] == '-')) return -1;
  return U(p[0]);
}

// The first position from `from` where a match may start: `from` itself, or
// with a first literal the next occurrence of it (nullptr if none).
const char* NextCandidate(Matcher* m, const char* from, int first) {
  if (first < 0) return from;
  const void* hit = std::memchr(from, first, static_cast<size_t>(m->src_end - from));
  const char* at = hit ? static_cast<const char*>(hit) : m->src_end;
  Charge(m, (at - from) / 8);
  return hit ? at : nullptr;
}

int FindOrMatch(lua_State* L, bool find) {
  size_t ls, lp;
  const char* s = luaL_checklstring(L, 1, &ls);
  const char* p = luaL_checklstring(L, 2, &lp);
  const size_t init = StartOffset(luaL_optinteger(L, 3, 1), ls) - 1;
  if (init > ls) {
    lua_pushnil(L);
    return 1;
  }
  Matcher m;
  InitMatcher(&m, L, s, ls, p, lp, ChargeOf(L, 1));
  if (find && (lua_toboolean(L, 4) || !HasSpecials(p, lp))) {
    // A plain search; memmem is linear in the subject and the needle.
    const void* hit = lp == 0 ? s + init : memmem(s + init, ls - init, p, lp);
    const size_t scanned = hit ? static_cast<const char*>(hit) - (s + init) + lp : ls - init;
    Charge(&m, static_cast<int64_t>(scanned / 8));
    Settle(&m);
    if (hit == nullptr) {
      lua_pushnil(L);
      return 1;
    }
    const size_t at = static_cast<const char*>(hit) - s;
    lua_pushinteger(L, static_cast<lua_Integer>(at) + 1);
    lua_pushinteger(L, static_cast<lua_Integer>(at + lp));
    return 2;
  }
  const bool anchored = lp > 0 && *p == '^';
  if (anchored) {
    ++p;
    --lp;
    m.p_end = p + lp;
  }
  const int first = anchored ? -1 : FirstLiteral(p, lp);
  for (const char* from = s + init;; ++from) {
    from = NextCandidate(&m, from, first);
    if (from == nullptr) break;
    Restart(&m);
    if (const char* e = Match(&m, from, p)) {
      Settle(&m);
      if (find) {
        lua_pushinteger(L, static_cast<lua_Integer>(from - s) + 1);
        lua_pushinteger(L, static_cast<lua_Integer>(e - s));
        return PushCaptures(&m, nullptr, nullptr) + 2;
      }
      return PushCaptures(&m, from, e);
    }
    if (from >= m.src_end || anchored) break;
  }
  Settle(&m);
  lua_pushnil(L);
  return 1;
}

int Find(lua_State* L) { return FindOrMatch(L, true); }
int MatchFn(lua_State* L) { return FindOrMatch(L, false); }

struct GmatchState {
  size_t next;  // where the next search starts
  size_t last;  // the end of the last match (or kNoMatch)
};
constexpr size_t kNoMatch = static_cast<size_t>(-1);

// Upvalues: subject, pattern, GmatchState, charge.
int GmatchStep(lua_State* L) {
  size_t ls, lp;
  const char* s = lua_tolstring(L, lua_upvalueindex(1), &ls);
  const char* p = lua_tolstring(L, lua_upvalueindex(2), &lp);
  auto* st = static_cast<GmatchState*>(lua_touserdata(L, lua_upvalueindex(3)));
  Matcher m;
  InitMatcher(&m, L, s, ls, p, lp, ChargeOf(L, 4));
  const int first = FirstLiteral(p, lp);
  for (const char* from = s + st->next; from <= m.src_end; ++from) {
    from = NextCandidate(&m, from, first);
    if (from == nullptr) break;
    Restart(&m);
    const char* e = Match(&m, from, p);
    if (e != nullptr && static_cast<size_t>(e - s) != st->last) {
      Settle(&m);
      st->next = st->last = static_cast<size_t>(e - s);
      return PushCaptures(&m, from, e);
    }
  }
  Settle(&m);
  st->next = ls + 1;
  return 0;
}

int Gmatch(lua_State* L) {
  size_t ls;
  luaL_checklstring(L, 1, &ls);
  luaL_checkstring(L, 2);
  size_t init = StartOffset(luaL_optinteger(L, 3, 1), ls) - 1;
  if (init > ls) init = ls + 1;  // past the end: no match
  lua_settop(L, 2);
  auto* st = static_cast<GmatchState*>(lua_newuserdatauv(L, sizeof(GmatchState), 0));
  st->next = init;
  st->last = kNoMatch;
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_pushcclosure(L, GmatchStep, 4);
  return 1;
}

// Appends the replacement string at index 3, with %0-%9 and %% expanded.
void AppendTemplate(Matcher* m, luaL_Buffer* b, const char* s, const char* e) {
  lua_State* L = m->L;
  size_t l;
  const char* t = lua_tolstring(L, 3, &l);
  const char* end = t + l;
  Charge(m, static_cast<int64_t>(l));
  while (t < end) {
    const char* esc = static_cast<const char*>(std::memchr(t, kEsc, static_cast<size_t>(end - t)));
    if (esc == nullptr) {
      luaL_addlstring(b, t, static_cast<size_t>(end - t));
      return;
    }
    luaL_addlstring(b, t, static_cast<size_t>(esc - t));
    const char c = esc + 1 < end ? esc[1] : '\0';
    if (c == kEsc) {
      luaL_addchar(b, kEsc);
    } else if (c == '0') {
      luaL_addlstring(b, s, static_cast<size_t>(e - s));
    } else if (std::isdigit(U(c))) {
      PushCapture(m, c - '1', s, e);
      luaL_addvalue(b);  // converts a position capture to text
    } else {
      Fail(m, "invalid use of '%c' in replacement string", kEsc);
    }
    t = esc + 2;
  }
}

// Appends the replacement of the match [s, e): by template, table or function.
void AppendReplacement(Matcher* m, luaL_Buffer* b, const char* s, const char* e, int kind) {
  lua_State* L = m->L;
  // The function or an __index metamethod runs policy code, which may raise.
  if (kind == LUA_TFUNCTION || kind == LUA_TTABLE) Settle(m);
  if (kind == LUA_TFUNCTION) {
    lua_pushvalue(L, 3);
    const int n = PushCaptures(m, s, e);
    lua_call(L, n, 1);
  } else if (kind == LUA_TTABLE) {
    PushCapture(m, 0, s, e);
    lua_gettable(L, 3);
  } else {
    AppendTemplate(m, b, s, e);
    return;
  }
  if (!lua_toboolean(L, -1)) {  // nil or false: keep the match
    lua_pop(L, 1);
    luaL_addlstring(b, s, static_cast<size_t>(e - s));
  } else if (!lua_isstring(L, -1)) {
    Fail(m, "invalid replacement value (a %s)", luaL_typename(L, -1));
  } else {
    luaL_addvalue(b);
  }
}

int Gsub(lua_State* L) {
  size_t ls, lp;
  const char* src = luaL_checklstring(L, 1, &ls);
  const char* p = luaL_checklstring(L, 2, &lp);
  const int kind = lua_type(L, 3);
  const lua_Integer max = luaL_optinteger(L, 4, static_cast<lua_Integer>(ls) + 1);
  luaL_argexpected(L,
                   kind == LUA_TNUMBER || kind == LUA_TSTRING || kind == LUA_TFUNCTION ||
                       kind == LUA_TTABLE,
                   3, "string/function/table");
  const bool anchored = lp > 0 && *p == '^';
  if (anchored) {
    ++p;
    --lp;
  }
  Matcher m;
  InitMatcher(&m, L, src, ls, p, lp, ChargeOf(L, 1));
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  const char* last = nullptr;
  lua_Integer n = 0;
  const int first = anchored ? -1 : FirstLiteral(p, lp);
  while (n < max) {
    if (first >= 0) {  // copy up to the next place a match may start
      const char* at = NextCandidate(&m, src, first);
      const char* stop = at != nullptr ? at : m.src_end;
      luaL_addlstring(&b, src, static_cast<size_t>(stop - src));
      src = stop;
      if (at == nullptr) break;
    }
    Restart(&m);
    const char* e = Match(&m, src, p);
    if (e != nullptr && e != last) {
      ++n;
      AppendReplacement(&m, &b, src, e, kind);
      src = last = e;
    } else if (src < m.src_end) {
      luaL_addchar(&b, *src++);
    } else {
      break;
    }
    if (anchored) break;
  }
  Settle(&m);
  luaL_addlstring(&b, src, static_cast<size_t>(m.src_end - src));
  luaL_pushresult(&b);
  lua_pushinteger(L, n);
  return 2;
}

}  // namespace

void InstallPatternFunctions(lua_State* L, int index, PatternCharge charge) {
  index = lua_absindex(L, index);
  const std::pair<const char*, lua_CFunction> fns[] = {
      {"find", Find}, {"match", MatchFn}, {"gmatch", Gmatch}, {"gsub", Gsub}};
  for (const auto& [name, fn] : fns) {
    lua_pushlightuserdata(L, reinterpret_cast<void*>(charge));
    lua_pushcclosure(L, fn, 1);
    lua_setfield(L, index, name);
  }
}

}  // namespace bastion::policy
