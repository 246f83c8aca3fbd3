// sunrise-link: SunrisePlatform for Mooncake TENT, over the device plugin of
// libsunrise_link.so (TENT's device_plugin_t ABI, registered by tent_register_device_plugin).

#include "tent/platform/sunrise.h"

#include <glog/logging.h>

#include <cstring>
#include <string>
#include <vector>

#include "sunrise_link_loader.h"
#include "tent/runtime/topology.h"

namespace mooncake {
namespace tent {

SunrisePlatform::SunrisePlatform(std::shared_ptr<Config> config)
    : conf(config), host_(config) {}

SunrisePlatform::~SunrisePlatform() {
    if (plugin_ && plugin_ctx_ && plugin_->destroy_plugin) {
        plugin_->destroy_plugin(plugin_ctx_);
    }
}

bool SunrisePlatform::devices() {
    std::call_once(load_once_, [this] {
        std::string configured;
        if (conf) configured = conf->get(sunrise_link_cpp::kLibraryPathKey, "");
        sunrise_link_cpp::Library lib;
        std::string why;
        if (!sunrise_link_cpp::openLibrary(configured, &lib, &why)) {
            unavailable_reason_ = why;
        } else {
            int (*reg)(sunrise_link_device_plugin_t*) = nullptr;
            auto plugin = std::make_unique<sunrise_link_device_plugin_t>();
            std::memset(plugin.get(), 0, sizeof(*plugin));
            if (!sunrise_link_cpp::resolve(lib, "tent_register_device_plugin", &reg, &why)) {
                unavailable_reason_ = why;
            } else if (reg(plugin.get()) != 0) {
                unavailable_reason_ = "tent_register_device_plugin failed in " + lib.origin;
            } else if (!plugin->create_plugin || !plugin->destroy_plugin || !plugin->alloc ||
                       !plugin->free || !plugin->memcpy_sync || !plugin->query_location ||
                       !plugin->get_device_count) {
                unavailable_reason_ = "device plugin of " + lib.origin + " lacks a function";
            } else {
                void* ctx = plugin->create_plugin();
                if (!ctx) {
                    const char* (*last_error)(void) = nullptr;
                    std::string detail;
                    std::string ignored;
                    if (sunrise_link_cpp::resolve(lib, "sunrise_link_last_error", &last_error,
                                                  &ignored) &&
                        last_error && last_error()) {
                        detail = last_error();
                    }
                    unavailable_reason_ = "device plugin of " + lib.origin +
                                          " could not start the Tang runtime" +
                                          (detail.empty() ? "" : ": " + detail);
                } else {
                    plugin_ctx_ = ctx;
                    plugin_ = std::move(plugin);
                }
            }
        }
        if (!plugin_) {
            LOG(WARNING) << "Sunrise platform: no Tang devices available ("
                         << unavailable_reason_ << "); using host memory only";
        }
    });
    return plugin_ != nullptr;
}

std::string SunrisePlatform::deviceLocation(void* addr, size_t len) {
    if (!addr || !devices()) return std::string();
    sunrise_link_location_t loc[4];
    std::memset(loc, 0, sizeof(loc));
    int n = plugin_->query_location(plugin_ctx_, addr, len, loc, 4);
    if (n <= 0) return std::string();
    loc[0].location[sizeof(loc[0].location) - 1] = '\0';
    return std::string(loc[0].location);
}

Status SunrisePlatform::probe(std::vector<Topology::NicEntry>& nic_list,
                              std::vector<Topology::MemEntry>& mem_list) {
    Status s = host_.probe(nic_list, mem_list);
    if (!s.ok()) return s;
    if (!devices()) return Status::OK();
    int count = plugin_->get_device_count(plugin_ctx_);
    if (count <= 0) return Status::OK();
    for (int i = 0; i < count; ++i) {
        Topology::MemEntry entry;
        entry.name = "cuda:" + std::to_string(i);
        entry.numa_node = -1;
        entry.type = Topology::MEM_CUDA;
        if (plugin_->get_device_pci_bus_id) {
            char bus_id[64] = {0};
            if (plugin_->get_device_pci_bus_id(plugin_ctx_, i, bus_id, sizeof(bus_id)) == 0) {
                entry.pci_bus_id = bus_id;
            }
        }
        for (int nic = 0; nic < static_cast<int>(nic_list.size()); ++nic) {
            entry.device_list[2].push_back(nic);
        }
        mem_list.push_back(std::move(entry));
    }
    return Status::OK();
}

Status SunrisePlatform::allocate(void** pptr, size_t size, MemoryOptions& options) {
    if (!sunrise_link_cpp::isDeviceLocation(options.location)) {
        Status s = host_.allocate(pptr, size, options);
        if (s.ok()) remember(*pptr, size, false);
        return s;
    }
    if (!devices()) {
        return Status::DeviceNotFound("Sunrise platform: cannot allocate at " +
                                      options.location + ": " + unavailable_reason_);
    }
    if (plugin_->alloc(plugin_ctx_, pptr, size, options.location.c_str()) != 0) {
        return Status::CudaError("Sunrise platform: allocating " + std::to_string(size) +
                                 " bytes at " + options.location + " failed");
    }
    remember(*pptr, size, true);
    return Status::OK();
}

Status SunrisePlatform::free(void* ptr, size_t size) {
    if (!ptr) return Status::OK();
    forget(ptr);
    if (deviceLocation(ptr, size).empty()) return host_.free(ptr, size);
    if (plugin_->free(plugin_ctx_, ptr, size) != 0) {
        return Status::CudaError("Sunrise platform: freeing device memory failed");
    }
    return Status::OK();
}

Status SunrisePlatform::copy(void* dst, void* src, size_t length) {
    if (!devices()) return host_.copy(dst, src, length);
    if (plugin_->memcpy_sync(plugin_ctx_, dst, src, length) != 0) {
        return Status::CudaError("Sunrise platform: copy of " + std::to_string(length) +
                                 " bytes failed");
    }
    return Status::OK();
}

namespace {
// A thread's last answer from the allocation table.
struct LastAnswer {
    const void* platform = nullptr;
    uint64_t generation = 0;
    uintptr_t start = 0;
    uintptr_t end = 0;
    bool device = false;
};
thread_local LastAnswer t_last;
// Bumped whenever a platform forgets an allocation: thread-local answers older than it are
// not used (one counter for every platform object, so a new object at an old one's address
// cannot match an old answer).
std::atomic<uint64_t> g_generation{1};
}  // namespace

void SunrisePlatform::remember(void* ptr, size_t size, bool device) {
    if (!ptr || size == 0) return;
    auto start = reinterpret_cast<uintptr_t>(ptr);
    std::unique_lock<std::shared_mutex> lock(allocations_mutex_);
    allocations_[start] = Allocation{start + size, device};
}

void SunrisePlatform::forget(void* ptr) {
    std::unique_lock<std::shared_mutex> lock(allocations_mutex_);
    if (allocations_.erase(reinterpret_cast<uintptr_t>(ptr)) > 0) {
        g_generation.fetch_add(1, std::memory_order_acq_rel);
    }
}

bool SunrisePlatform::isDeviceMemory(void* addr) {
    if (!addr) return false;
    auto a = reinterpret_cast<uintptr_t>(addr);
    uint64_t generation = g_generation.load(std::memory_order_acquire);
    if (t_last.platform == this && t_last.generation == generation && a >= t_last.start &&
        a < t_last.end) {
        return t_last.device;
    }
    {
        std::shared_lock<std::shared_mutex> lock(allocations_mutex_);
        auto it = allocations_.upper_bound(a);
        if (it != allocations_.begin() && a < std::prev(it)->second.end) {
            --it;
            t_last = LastAnswer{this, generation, it->first, it->second.end, it->second.device};
            return it->second.device;
        }
    }
    if (!devices()) return false;
    sunrise_link_location_t loc;
    return plugin_->query_location(plugin_ctx_, addr, 1, &loc, 1) > 0;
}

MemoryType SunrisePlatform::getMemoryType(void* addr) {
    return isDeviceMemory(addr) ? MTYPE_CUDA : MTYPE_CPU;
}

const std::vector<RangeLocation> SunrisePlatform::getLocation(void* start, size_t len,
                                                              bool skip_prefault) {
    std::string loc = deviceLocation(start, len);
    if (!loc.empty()) {
        return {RangeLocation{reinterpret_cast<uint64_t>(start), len, loc}};
    }
    return host_.getLocation(start, len, skip_prefault);
}

}  // namespace tent
}  // namespace mooncake
