// sunrise-link: locating and loading libsunrise_link.so for the TENT drop-ins.
//
// Internal to cpp/; shared by SunriseLinkTransport and SunrisePlatform. Header-only (inline)
// so that both static targets can include it without duplicate symbols.
//
// Lookup order (the first that applies wins; an explicit choice is never second-guessed):
//   1. `transports/sunrise_link/library_path` in TENT's config, if non-empty;
//   2. the environment variable SUNRISE_LINK_LIBRARY, if non-empty;
//   3. the path baked in at build time (SUNRISE_LINK_DEFAULT_LIBRARY), if that file exists;
//   4. "libsunrise_link.so" through the dynamic loader's default search.
//
// The library is opened RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE and never unloaded: it runs
// threads with thread-local state, and one copy serves every transport and the platform.

#ifndef SUNRISE_LINK_CPP_LOADER_H
#define SUNRISE_LINK_CPP_LOADER_H

#include <dlfcn.h>
#include <sys/stat.h>

#include <cstdlib>
#include <mutex>
#include <string>
#include <vector>

#include "sunrise_link.h"

namespace sunrise_link_cpp {

inline constexpr const char* kLibraryEnv = "SUNRISE_LINK_LIBRARY";
inline constexpr const char* kLibrarySoname = "libsunrise_link.so";
inline constexpr const char* kLibraryPathKey = "transports/sunrise_link/library_path";

// A loaded library: the dlopen handle and the path or name it was opened from.
struct Library {
    void* handle = nullptr;
    std::string origin;
};

inline bool fileExists(const std::string& path) {
    struct stat st;
    return !path.empty() && ::stat(path.c_str(), &st) == 0;
}

// The candidates in lookup order, each with a note saying where it came from.
inline std::vector<std::pair<std::string, std::string>> libraryCandidates(
    const std::string& configured) {
    std::vector<std::pair<std::string, std::string>> out;
    if (!configured.empty()) {
        out.emplace_back(configured, std::string(kLibraryPathKey));
        return out;
    }
    const char* env = std::getenv(kLibraryEnv);
    if (env && *env) {
        out.emplace_back(env, std::string("$") + kLibraryEnv);
        return out;
    }
#ifdef SUNRISE_LINK_DEFAULT_LIBRARY
    if (fileExists(SUNRISE_LINK_DEFAULT_LIBRARY)) {
        out.emplace_back(SUNRISE_LINK_DEFAULT_LIBRARY, "installed location");
    }
#endif
    out.emplace_back(kLibrarySoname, "default loader search");
    return out;
}

// Opens the library. On failure returns false and sets *why to a message naming every path
// tried and the loader's reason for each.
inline bool openLibrary(const std::string& configured, Library* lib, std::string* why) {
    std::string errors;
    for (const auto& cand : libraryCandidates(configured)) {
        ::dlerror();
        void* h = ::dlopen(cand.first.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
        if (h) {
            lib->handle = h;
            lib->origin = cand.first;
            return true;
        }
        const char* err = ::dlerror();
        if (!errors.empty()) errors += "; ";
        errors += cand.first + " (" + cand.second + "): " + (err ? err : "dlopen failed");
    }
#ifdef SUNRISE_LINK_DEFAULT_LIBRARY
    const char* env = std::getenv(kLibraryEnv);
    if (configured.empty() && !(env && *env) && !fileExists(SUNRISE_LINK_DEFAULT_LIBRARY)) {
        errors += std::string("; installed location ") + SUNRISE_LINK_DEFAULT_LIBRARY +
                  ": no such file";
    }
#endif
    *why = "cannot load the sunrise_link library: " + errors +
           ". Set " + kLibraryPathKey + " or $" + kLibraryEnv + " to its path";
    return false;
}

// Resolves `name` in `lib`; on failure sets *why.
template <typename Fn>
inline bool resolve(const Library& lib, const char* name, Fn* out, std::string* why) {
    ::dlerror();
    void* sym = ::dlsym(lib.handle, name);
    const char* err = ::dlerror();
    if (!sym || err) {
        *why = std::string("symbol ") + name + " not found in " + lib.origin + ": " +
               (err ? err : "NULL");
        return false;
    }
    *out = reinterpret_cast<Fn>(sym);
    return true;
}

// Copies `s` into a fixed-size C array, always NUL-terminated; false if it did not fit.
template <size_t N>
inline bool copyFixed(char (&dst)[N], const std::string& s) {
    size_t n = s.size() < N - 1 ? s.size() : N - 1;
    s.copy(dst, n);
    dst[n] = '\0';
    return s.size() < N;
}

// The type part of a TENT location ("cuda:3" -> "cuda", "*" or "cpu" -> "*").
inline std::string locationType(const std::string& location) {
    size_t colon = location.find(':');
    if (location == "*" || colon == std::string::npos) return "*";
    return location.substr(0, colon);
}

// Whether a location names Tang device memory (TENT spells it "cuda:N"; "npu:N" is accepted
// like upstream).
inline bool isDeviceLocation(const std::string& location) {
    std::string t = locationType(location);
    return t == "cuda" || t == "npu";
}

}  // namespace sunrise_link_cpp

#endif  // SUNRISE_LINK_CPP_LOADER_H
