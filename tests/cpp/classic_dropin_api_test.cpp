// Compile-time checks of the classic engine's drop-in against a Mooncake checkout:
//  * the drop-in header is used the way MultiTransport and the classic tests use upstream's
//    (same name, default constructor, base class, the two static test helpers);
//  * the slice fields the drop-in keeps its bookkeeping in exist with the types it assumes;
//  * no Tang runtime header is reachable (this file is compiled without one on the path).

#include <cstdint>
#include <memory>
#include <string>
#include <type_traits>

#include "sunrise_link.h"
#include "transfer_metadata.h"
#include "transport/sunrise_link_transport/sunrise_link_transport.h"
#include "transport/transport.h"

#if defined(TANG_RUNTIME_API_H) || defined(__TANG_RUNTIME_API_H__) || defined(PTML_H)
#error "a Tang runtime header was included"
#endif

using mooncake::SunriseLinkTransport;
using mooncake::Transport;

// What multi_transport.cpp does with the drop-in.
[[maybe_unused]] static Transport* makeTransport() { return new SunriseLinkTransport(); }

// What sunrise_link_transport_unit_test.cpp calls.
[[maybe_unused]] static bool helpers() {
    return SunriseLinkTransport::parseDeviceIdForTest(std::string("cuda:7")) == 7 &&
           !SunriseLinkTransport::requestRangeFitsInBufferForTest(UINT64_MAX - 50, 80,
                                                                  UINT64_MAX - 100, 64);
}

static_assert(std::is_base_of_v<Transport, SunriseLinkTransport>);
static_assert(std::is_default_constructible_v<SunriseLinkTransport>);
static_assert(std::is_same_v<decltype(&SunriseLinkTransport::parseDeviceIdForTest),
                             int (*)(const std::string&)>);
static_assert(std::is_same_v<decltype(&SunriseLinkTransport::requestRangeFitsInBufferForTest),
                             bool (*)(uint64_t, uint64_t, uint64_t, uint64_t)>);

// The per-request bookkeeping lives in Slice::local and Slice::cleanup_callback.
using Slice = Transport::Slice;
static_assert(std::is_same_v<decltype(Slice::local.cuda_stream), void*>);
static_assert(std::is_same_v<decltype(Slice::local.cuda_device), int>);
static_assert(std::is_same_v<decltype(Slice::cleanup_callback), void (*)(Slice*)>);

// Opcodes: the drop-in maps them explicitly; both engines number them alike.
static_assert(SUNRISE_LINK_OP_READ == Transport::TransferRequest::READ);
static_assert(SUNRISE_LINK_OP_WRITE == Transport::TransferRequest::WRITE);

int main() { return 0; }
