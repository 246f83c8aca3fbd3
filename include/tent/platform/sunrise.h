// sunrise-link: drop-in for Mooncake TENT's Sunrise platform.
//
// Same path, namespace, class and methods as TENT's own header. Device memory (allocation,
// location, copies, device count) goes through the device plugin of libsunrise_link.so
// (tent_register_device_plugin, TENT's device_plugin_t ABI), loaded with dlopen on first use;
// host memory and NIC probing go to TENT's CpuPlatform. No Tang runtime header is needed to
// compile this file, and without the library the platform behaves as a host-only platform.

#ifndef SUNRISE_H
#define SUNRISE_H

#include <memory>
#include <mutex>
#include <string>
#include <atomic>
#include <map>
#include <shared_mutex>
#include <cstdint>
#include <vector>

#include "tent/common/config.h"
#include "tent/platform/cpu.h"
#include "tent/runtime/platform.h"

struct sunrise_link_device_plugin_t;

namespace mooncake {
namespace tent {

class SunrisePlatform : public Platform {
   public:
    SunrisePlatform(std::shared_ptr<Config> config);

    virtual ~SunrisePlatform();

    virtual Status probe(std::vector<Topology::NicEntry>& nic_list,
                         std::vector<Topology::MemEntry>& mem_list);

    virtual Status allocate(void** pptr, size_t size, MemoryOptions& options);

    virtual Status free(void* ptr, size_t size);

    virtual Status copy(void* dst, void* src, size_t length);

    virtual MemoryType getMemoryType(void* addr);

    virtual const std::vector<RangeLocation> getLocation(void* start, size_t len,
                                                         bool skip_prefault = false);

    virtual const std::string type() const { return "sunrise"; }

   private:
    // Loads the device plugin once; false (and a logged reason) if it is unavailable.
    bool devices();
    // The device location ("cuda:N") of addr, or "" for host or unknown memory.
    std::string deviceLocation(void* addr, size_t len);
    // Whether addr is Tang device memory (TENT asks for every request: no string is built;
    // memory this platform allocated is answered from its own table, a thread's last answer
    // from a thread-local cache).
    bool isDeviceMemory(void* addr);
    // Records (or forgets) memory this platform allocated.
    void remember(void* ptr, size_t size, bool device);
    void forget(void* ptr);

    std::shared_ptr<Config> conf;
    CpuPlatform host_;
    std::once_flag load_once_;
    std::unique_ptr<sunrise_link_device_plugin_t> plugin_;
    void* plugin_ctx_ = nullptr;
    std::string unavailable_reason_;

    // What this platform allocated: start -> (end, device memory?).
    struct Allocation {
        uintptr_t end;
        bool device;
    };
    std::shared_mutex allocations_mutex_;
    std::map<uintptr_t, Allocation> allocations_;
};

}  // namespace tent
}  // namespace mooncake

#endif  // SUNRISE_H
