// sunrise-link: drop-in for Mooncake TENT's Sunrise Link transport.
//
// Same path, namespace and class name as TENT's own header, so TENT's transport loader
// compiles unchanged; every call is forwarded to libsunrise_link.so, which install() opens
// with dlopen (see the README, "Using sunrise-link in Mooncake TENT", for the lookup order). If the library cannot be
// loaded, install() fails with a Status naming the cause and TENT carries on without the
// transport. No Tang runtime header is needed to compile this file.

#ifndef SUNRISE_LINK_TENT_SUNRISE_LINK_TRANSPORT_H
#define SUNRISE_LINK_TENT_SUNRISE_LINK_TRANSPORT_H

#include <atomic>
#include <cstdint>
#include <memory>
#include <shared_mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "sunrise_link.h"
#include "tent/runtime/control_plane.h"
#include "tent/runtime/transport.h"

namespace mooncake {
namespace tent {

class SunriseLinkTransport;

// A sub-batch: a handle into the library's sub-batch table. size() asks the library, so it
// counts exactly the tasks the library accepted (TENT uses it as the next task id).
struct SunriseLinkSubBatch : public Transport::SubBatch {
    SunriseLinkSubBatch(const SunriseLinkTransport* owner, size_t max_size)
        : owner(owner), max_size(max_size) {}
    size_t size() const override;

    const SunriseLinkTransport* owner;
    size_t max_size;
    uint64_t handle = 0;          // the library's sub-batch handle (never 0 once allocated)
    uint64_t progress_token = 0;  // key of this sub-batch in the owner's progress table
};

class SunriseLinkTransport : public Transport {
   public:
    SunriseLinkTransport();
    ~SunriseLinkTransport() override;

    SunriseLinkTransport(const SunriseLinkTransport&) = delete;
    SunriseLinkTransport& operator=(const SunriseLinkTransport&) = delete;

    Status install(std::string& local_segment_name,
                   std::shared_ptr<ControlService> metadata,
                   std::shared_ptr<Topology> local_topology,
                   std::shared_ptr<Config> conf = nullptr) override;

    Status uninstall() override;

    Status allocateSubBatch(SubBatchRef& batch, size_t max_size) override;

    Status freeSubBatch(SubBatchRef& batch) override;

    Status submitTransferTasks(SubBatchRef batch,
                               const std::vector<Request>& request_list) override;

    Status getTransferStatus(SubBatchRef batch, int task_id,
                             TransferStatus& status) override;

    bool supportsCancellation() const override;

    Status cancelTransferTask(SubBatchRef batch, int task_id) override;

    Status addMemoryBuffer(BufferDesc& desc, const MemoryOptions& options) override;

    // Registers every buffer even if one fails (TENT's default stops at the first failure);
    // returns the first failure.
    Status addMemoryBuffer(std::vector<BufferDesc>& desc_list,
                           const MemoryOptions& options) override;

    Status removeMemoryBuffer(BufferDesc& desc) override;

    bool supportNotification() const override;

    Status sendNotification(SegmentID target_id, const Notification& notify) override;

    Status receiveNotification(std::vector<Notification>& notify_list) override;

    const char* getName() const override { return "sunrise_link"; }

    double getEstimatedBandwidth() const override;

    // Drops the library's cached IPC mappings of a remote segment (e.g. after it was closed
    // or reopened). Not part of TENT's Transport interface.
    Status invalidateSegment(SegmentID target_id);

    // Where the library was loaded from ("" before install).
    const std::string& libraryOrigin() const { return library_origin_; }

   private:
    friend struct SunriseLinkSubBatch;

    // Host callbacks handed to the library (user_data = this).
    static int32_t lookupRemoteBuffer(void* user_data, uint64_t segment_id, uint64_t addr,
                                      uint64_t length, int32_t refresh,
                                      sunrise_link_remote_buffer_t* out);
    static void logLine(void* user_data, int32_t level, const char* msg);
    static void notifyProgress(void* user_data, uint64_t progress_token);

    Status fromCode(int32_t rc, const std::string& what) const;
    SunriseLinkSubBatch* checkedBatch(SubBatchRef batch) const;

    sunrise_link_transport_plugin_t api_{};
    sunrise_link_transport_t* handle_ = nullptr;
    std::string library_origin_;
    std::string local_machine_id_;
    std::shared_ptr<ControlService> metadata_;
    std::shared_ptr<Config> conf_;
    sunrise_link_capabilities_t lib_caps_{};
    std::atomic<bool> installed_{false};

    // progress token -> sub-batch. The library may report progress for a sub-batch after
    // TENT freed it (a task still finishing), so tokens are looked up, never dereferenced.
    mutable std::shared_mutex progress_mutex_;
    std::unordered_map<uint64_t, SunriseLinkSubBatch*> progress_table_;
    std::atomic<uint64_t> next_progress_token_{1};
};

}  // namespace tent
}  // namespace mooncake

#endif  // SUNRISE_LINK_TENT_SUNRISE_LINK_TRANSPORT_H
