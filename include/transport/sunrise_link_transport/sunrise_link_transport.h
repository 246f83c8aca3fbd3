// sunrise-link: drop-in for the Sunrise Link transport of Mooncake's classic Transfer Engine.
//
// Same path, namespace and class name as the classic engine's own header, so MultiTransport
// ("sunrise_link"), tebench's classic backend, transfer_engine_bench and the classic tests
// compile unchanged. Every call is forwarded to the C ABI of libsunrise_link.so, which
// install() opens with dlopen exactly like the TENT drop-in (lookup order: $SUNRISE_LINK_LIBRARY,
// the path baked in at configure time, the loader's search path). If the library cannot be
// loaded, install() fails with a message naming every path tried and MultiTransport reports
// the transport as not installed. No Tang runtime header is needed to compile this file.

#ifndef SUNRISE_LINK_CLASSIC_SUNRISE_LINK_TRANSPORT_H
#define SUNRISE_LINK_CLASSIC_SUNRISE_LINK_TRANSPORT_H

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "transfer_metadata.h"
#include "transport/transport.h"

namespace sunrise_link_cpp {
// The library instance and what its callbacks need, shared with the submissions still alive
// so that a batch freed late never reaches a destroyed transport (cpp/, internal).
struct ClassicCore;
}  // namespace sunrise_link_cpp

namespace mooncake {

class SunriseLinkTransport : public Transport {
   public:
    SunriseLinkTransport();

    ~SunriseLinkTransport() override;

    SunriseLinkTransport(const SunriseLinkTransport&) = delete;
    SunriseLinkTransport& operator=(const SunriseLinkTransport&) = delete;

    // Appends one task per entry to the batch and submits them (used when the transport is
    // driven directly; the engine goes through submitTransferTask).
    Status submitTransfer(BatchID batch_id,
                          const std::vector<TransferRequest>& entries) override;

    // Submits the tasks to the library, one library task per request. Never blocks on a
    // copy; a request that cannot be carried out ends as a FAILED task. Fails only when the
    // transport is not installed, a task has no request, or the library refuses the batch.
    Status submitTransferTask(
        const std::vector<TransferTask*>& task_list) override;

    // COMPLETED or FAILED once every request of the task has ended, else WAITING.
    Status getTransferStatus(BatchID batch_id, size_t task_id,
                             TransferStatus& status) override;

    // The device index of a location "<type>:<N>": N if it is a decimal integer from 0 to
    // INT_MAX and all that follows the last ':', else -1 ("cuda:7" -> 7, "cuda:",
    // "cuda:7x", "cuda:-1" -> -1).
    static int parseDeviceIdForTest(const std::string& location);

    // Whether [dest_addr, dest_addr + length) lies inside [buffer_addr, buffer_addr +
    // buffer_length), without wrapping around.
    static bool requestRangeFitsInBufferForTest(uint64_t dest_addr,
                                                uint64_t length,
                                                uint64_t buffer_addr,
                                                uint64_t buffer_length);

   protected:
    int install(std::string& local_server_name,
                std::shared_ptr<TransferMetadata> meta,
                std::shared_ptr<Topology> topo) override;

    int registerLocalMemory(void* addr, size_t length,
                            const std::string& location, bool remote_accessible,
                            bool update_metadata = true) override;

    int unregisterLocalMemory(void* addr, bool update_metadata = true) override;

    int registerLocalMemoryBatch(const std::vector<BufferEntry>& buffer_list,
                                 const std::string& location) override;

    int unregisterLocalMemoryBatch(
        const std::vector<void*>& addr_list) override;

    const char* getName() const override { return "sunrise_link"; }

   private:
    int unregisterOne(void* addr, bool update_metadata);

    std::shared_ptr<sunrise_link_cpp::ClassicCore> core_;
    std::mutex register_mutex_;
    std::unordered_map<void*, size_t> registered_;  // base -> length
};

}  // namespace mooncake

#endif  // SUNRISE_LINK_CLASSIC_SUNRISE_LINK_TRANSPORT_H
