// Compile-time checks of the TENT drop-ins against a Mooncake checkout:
//  * the drop-in headers are used the way TENT's transport loader and platform selector use
//    upstream's (same names, constructors, base classes, overrides);
//  * the library's device plugin struct is TENT's device_plugin_t, field for field;
//  * the library's status codes are TENT's Status::Code values;
//  * no Tang runtime header is reachable (this file is compiled without one on the path).

#include <cstddef>
#include <memory>
#include <type_traits>

#include "sunrise_link.h"
#include "tent/common/config.h"
#include "tent/common/status.h"
#include "tent/device_plugin.h"
#include "tent/platform/sunrise.h"
#include "tent/runtime/transport.h"
#include "tent/transport/sunrise_link/sunrise_link_transport.h"

#if defined(TANG_RUNTIME_API_H) || defined(__TANG_RUNTIME_API_H__) || defined(PTML_H)
#error "a Tang runtime header was included"
#endif

namespace tent = mooncake::tent;

// What transport_loader.cpp and platform.cpp do with the drop-ins.
[[maybe_unused]] static std::shared_ptr<tent::Transport> makeTransport() {
    return std::make_shared<tent::SunriseLinkTransport>();
}
[[maybe_unused]] static std::shared_ptr<tent::Platform> makePlatform(
    std::shared_ptr<tent::Config> conf) {
    return std::make_shared<tent::SunrisePlatform>(conf);
}

static_assert(std::is_base_of_v<tent::Transport, tent::SunriseLinkTransport>);
static_assert(std::is_base_of_v<tent::Platform, tent::SunrisePlatform>);
static_assert(std::is_base_of_v<tent::Transport::SubBatch, tent::SunriseLinkSubBatch>);
static_assert(std::is_default_constructible_v<tent::SunriseLinkTransport>);
static_assert(std::is_constructible_v<tent::SunrisePlatform, std::shared_ptr<tent::Config>>);

// device_plugin_t (TENT) == sunrise_link_device_plugin_t (library).
#define SAME_FIELD(a, b, f)                                   \
    static_assert(offsetof(a, f) == offsetof(b, f), #f);      \
    static_assert(std::is_same_v<decltype(a::f), decltype(b::f)> || \
                      sizeof(a::f) == sizeof(b::f),            \
                  #f)
static_assert(sizeof(device_plugin_t) == sizeof(sunrise_link_device_plugin_t));
SAME_FIELD(device_plugin_t, sunrise_link_device_plugin_t, class_name);
SAME_FIELD(device_plugin_t, sunrise_link_device_plugin_t, create_plugin);
SAME_FIELD(device_plugin_t, sunrise_link_device_plugin_t, destroy_plugin);
SAME_FIELD(device_plugin_t, sunrise_link_device_plugin_t, alloc);
SAME_FIELD(device_plugin_t, sunrise_link_device_plugin_t, free);
SAME_FIELD(device_plugin_t, sunrise_link_device_plugin_t, memcpy_sync);
SAME_FIELD(device_plugin_t, sunrise_link_device_plugin_t, query_location);
SAME_FIELD(device_plugin_t, sunrise_link_device_plugin_t, get_device_count);
SAME_FIELD(device_plugin_t, sunrise_link_device_plugin_t, get_device_pci_bus_id);
static_assert(sizeof(location_t) == sizeof(sunrise_link_location_t));
SAME_FIELD(location_t, sunrise_link_location_t, start);
SAME_FIELD(location_t, sunrise_link_location_t, length);
SAME_FIELD(location_t, sunrise_link_location_t, location);
static_assert(LOCATION_LEN == SUNRISE_LINK_DEVICE_LOCATION_LEN);
static_assert(std::is_same_v<decltype(&tent_register_device_plugin),
                             int (*)(sunrise_link_device_plugin_t*)>);

// Status codes.
using Code = tent::Status::Code;
static_assert(SUNRISE_LINK_OK == static_cast<int>(Code::kOk));
static_assert(SUNRISE_LINK_INVALID_ARGUMENT == static_cast<int>(Code::kInvalidArgument));
static_assert(SUNRISE_LINK_TOO_MANY_REQUESTS == static_cast<int>(Code::kTooManyRequests));
static_assert(SUNRISE_LINK_ADDRESS_NOT_REGISTERED ==
              static_cast<int>(Code::kAddressNotRegistered));
static_assert(SUNRISE_LINK_DEVICE_NOT_FOUND == static_cast<int>(Code::kDeviceNotFound));
static_assert(SUNRISE_LINK_INVALID_ENTRY == static_cast<int>(Code::kInvalidEntry));
static_assert(SUNRISE_LINK_NEEDS_REFRESH_CACHE == static_cast<int>(Code::kNeedsRefreshCache));
static_assert(SUNRISE_LINK_RUNTIME_ERROR == static_cast<int>(Code::kCudaError));
static_assert(SUNRISE_LINK_INTERNAL_ERROR == static_cast<int>(Code::kInternalError));
static_assert(SUNRISE_LINK_NOT_IMPLEMENTED == static_cast<int>(Code::kNotImplemented));

// Task states.
static_assert(SUNRISE_LINK_TASK_INITIAL == tent::INITIAL);
static_assert(SUNRISE_LINK_TASK_PENDING == tent::PENDING);
static_assert(SUNRISE_LINK_TASK_INVALID == tent::INVALID);
static_assert(SUNRISE_LINK_TASK_CANCELED == tent::CANCELED);
static_assert(SUNRISE_LINK_TASK_COMPLETED == tent::COMPLETED);
static_assert(SUNRISE_LINK_TASK_TIMEOUT == tent::TIMEOUT);
static_assert(SUNRISE_LINK_TASK_FAILED == tent::FAILED);

// Opcodes.
static_assert(SUNRISE_LINK_OP_READ == tent::Request::READ);
static_assert(SUNRISE_LINK_OP_WRITE == tent::Request::WRITE);

int main() { return 0; }
