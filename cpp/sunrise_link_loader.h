// sunrise-link: locating and loading libsunrise_link.so for the C++ drop-ins.
//
// Internal to cpp/; shared by TENT's SunriseLinkTransport and SunrisePlatform and by the
// classic engine's SunriseLinkTransport. Header-only (inline) so that every target can include
// it without duplicate symbols.
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
#include <glog/logging.h>
#include <sys/stat.h>

#include <cstddef>
#include <cstdint>
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
// tried and the loader's reason for each. `config_key` is the host's config key for the path,
// named in the message (NULL for a host without one, such as the classic engine).
inline bool openLibrary(const std::string& configured, Library* lib, std::string* why,
                        const char* config_key = kLibraryPathKey) {
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
           ". Set " + (config_key ? std::string(config_key) + " or " : std::string()) +
           "$" + kLibraryEnv + " to its path";
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

// The plugin-table slots the transport drop-ins call; the library must fill them (the
// notification slots are optional). Checked against the struct_size the library reports.
inline constexpr size_t kRequiredTableSize =
    offsetof(sunrise_link_transport_plugin_t, stats_get) +
    sizeof(static_cast<sunrise_link_transport_plugin_t*>(nullptr)->stats_get);

// Whether every required slot is filled; names the first missing one otherwise.
inline bool requiredSlotsPresent(const sunrise_link_transport_plugin_t& t, std::string* missing) {
#define SUNRISE_LINK_CHECK_SLOT(slot) \
    if (!t.slot) {                    \
        *missing = #slot;             \
        return false;                 \
    }
    SUNRISE_LINK_CHECK_SLOT(name)
    SUNRISE_LINK_CHECK_SLOT(version)
    SUNRISE_LINK_CHECK_SLOT(last_error)
    SUNRISE_LINK_CHECK_SLOT(create)
    SUNRISE_LINK_CHECK_SLOT(destroy)
    SUNRISE_LINK_CHECK_SLOT(install)
    SUNRISE_LINK_CHECK_SLOT(uninstall)
    SUNRISE_LINK_CHECK_SLOT(capabilities_get)
    SUNRISE_LINK_CHECK_SLOT(bandwidth_get)
    SUNRISE_LINK_CHECK_SLOT(sub_batch_allocate)
    SUNRISE_LINK_CHECK_SLOT(sub_batch_free)
    SUNRISE_LINK_CHECK_SLOT(sub_batch_size)
    SUNRISE_LINK_CHECK_SLOT(submit)
    SUNRISE_LINK_CHECK_SLOT(task_status_get)
    SUNRISE_LINK_CHECK_SLOT(task_cancel)
    SUNRISE_LINK_CHECK_SLOT(task_error_get)
    SUNRISE_LINK_CHECK_SLOT(buffer_add)
    SUNRISE_LINK_CHECK_SLOT(buffer_remove)
    SUNRISE_LINK_CHECK_SLOT(segment_invalidate)
    SUNRISE_LINK_CHECK_SLOT(stats_get)
#undef SUNRISE_LINK_CHECK_SLOT
    return true;
}

// Opens the library (openLibrary, `config_key` as there) and fills *table with its transport
// plugin table, checked: the ABI version, the table size and every required slot. On failure
// returns false and sets *why to a message naming the library and what is wrong; *table is
// then untouched.
inline bool loadTransportPlugin(const std::string& configured,
                                sunrise_link_transport_plugin_t* table, std::string* origin,
                                std::string* why, const char* config_key = kLibraryPathKey) {
    Library lib;
    if (!openLibrary(configured, &lib, why, config_key)) return false;
    int32_t (*plugin_get)(sunrise_link_transport_plugin_t*) = nullptr;
    if (!resolve(lib, "sunrise_link_transport_plugin_get", &plugin_get, why)) {
        *why = "sunrise_link: " + *why;
        return false;
    }
    sunrise_link_transport_plugin_t t{};
    t.struct_size = sizeof(t);
    int32_t rc = plugin_get(&t);
    if (rc != SUNRISE_LINK_OK) {
        *why = "sunrise_link: " + lib.origin + ": sunrise_link_transport_plugin_get returned " +
               std::to_string(rc);
        return false;
    }
    if (t.abi_version < 1 || t.struct_size < kRequiredTableSize) {
        *why = "sunrise_link: " + lib.origin + " has ABI version " +
               std::to_string(t.abi_version) + " and a plugin table of " +
               std::to_string(t.struct_size) +
               " bytes; this adapter needs ABI version >= 1 with at least " +
               std::to_string(kRequiredTableSize) + " bytes";
        return false;
    }
    std::string missing;
    if (!requiredSlotsPresent(t, &missing)) {
        *why = "sunrise_link: " + lib.origin + ": plugin table slot '" + missing + "' is NULL";
        return false;
    }
    *table = t;
    *origin = lib.origin;
    return true;
}

// The library's log callback, for both engines: one line to glog with a [sunrise_link]
// prefix (debug = VLOG(1), trace = VLOG(2)).
inline void logToGlog(void*, int32_t level, const char* msg) {
    if (!msg) return;
    switch (level) {
        case SUNRISE_LINK_LOG_ERROR:
            LOG(ERROR) << "[sunrise_link] " << msg;
            break;
        case SUNRISE_LINK_LOG_WARN:
            LOG(WARNING) << "[sunrise_link] " << msg;
            break;
        case SUNRISE_LINK_LOG_INFO:
            LOG(INFO) << "[sunrise_link] " << msg;
            break;
        case SUNRISE_LINK_LOG_DEBUG:
            VLOG(1) << "[sunrise_link] " << msg;
            break;
        default:
            VLOG(2) << "[sunrise_link] " << msg;
            break;
    }
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
