// sunrise-link: drop-in for Mooncake TENT's Sunrise Link transport.
//
// Same path, namespace and class name as TENT's own header, so TENT's transport loader
// compiles unchanged; every call is forwarded to libsunrise_link.so, which install() opens
// with dlopen (see docs/integration.md for the lookup order). If the library cannot be
// loaded, install() fails with a Status naming the cause and TENT carries on without the
// transport. No Tang runtime header is needed to compile this file.

#ifndef SUNRISE_LINK_TENT_SUNRISE_LINK_TRANSPORT_H
#define SUNRISE_LINK_TENT_SUNRISE_LINK_TRANSPORT_H

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "sunrise_link.h"
#include "tent/runtime/control_plane.h"
#include "tent/runtime/transport.h"

namespace mooncake {
namespace tent {

class SunriseLinkTransport;

// A sub-batch: a handle into the library's sub-batch table. size() counts the tasks the
// library accepted (a submit the library refuses appends nothing); TENT uses it as the next
// task id. Its address is the progress token the library reports back: the library never
// reports progress for a sub-batch once sub_batch_free has returned.
struct SunriseLinkSubBatch : public Transport::SubBatch {
    SunriseLinkSubBatch(const SunriseLinkTransport* owner, size_t max_size)
        : owner(owner), max_size(max_size) {}
    size_t size() const override { return submitted.load(std::memory_order_acquire); }

    const SunriseLinkTransport* owner;
    size_t max_size;
    uint64_t handle = 0;  // the library's sub-batch handle (never 0 once allocated)
    std::atomic<size_t> submitted{0};
    // A pooled sub-batch handed out again: the library renews it with the first submit
    // (sunrise_link_transfer_submit_ex), or before any other call that names it.
    bool renew_pending = false;
    // Tasks [0, known_done) completed with their full length, as submit_ex reported; their
    // status is answered here without calling the library. lens[i] is task i's length
    // (capacity lens_cap >= max_size, grown only when a larger sub-batch is asked for).
    std::atomic<uint64_t> known_done{0};
    std::unique_ptr<uint64_t[]> lens;
    size_t lens_cap = 0;
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
    static void notifyProgress(void* user_data, uint64_t progress_token);

    Status fromCode(int32_t rc, const std::string& what) const;
    Status fromCode(int32_t rc, const char* what) const {
        return rc == SUNRISE_LINK_OK ? Status::OK() : fromCode(rc, std::string(what));
    }
    SunriseLinkSubBatch* checkedBatch(SubBatchRef batch) const;
    // Carries out a pending renewal (before any call other than submit names the sub-batch).
    Status renewIfPending(SunriseLinkSubBatch* b);
    // Renews a sub-batch taken from the pool: deferred to its first submit when the library
    // has submit_ex (ABI 3), else done now with sub_batch_recycle.
    bool renewPooled(SunriseLinkSubBatch* b, size_t max_size);

    sunrise_link_transport_plugin_t api_{};
    sunrise_link_transport_t* handle_ = nullptr;
    std::string library_origin_;
    std::string local_machine_id_;
    std::shared_ptr<ControlService> metadata_;
    std::shared_ptr<Config> conf_;
    sunrise_link_capabilities_t lib_caps_{};
    std::atomic<bool> installed_{false};

    // Sub-batches TENT freed, kept (live in the library) for its next allocations, which then
    // cost one sub_batch_recycle call instead of a free and an allocate.
    // Sharded by thread, so threads that allocate and free sub-batches side by side share no
    // lock (each shard on cache lines of its own).
    static constexpr size_t kPoolShards = 16;
    static constexpr size_t kPooledPerShard = 8;
    struct alignas(64) PoolShard {
        std::atomic_flag lock = ATOMIC_FLAG_INIT;
        std::vector<SunriseLinkSubBatch*> items;
    };
    PoolShard pool_[kPoolShards];
    static size_t poolShard();
    SunriseLinkSubBatch* takePooled();
    bool pool(SunriseLinkSubBatch* b);
    void drainPool();
};

}  // namespace tent
}  // namespace mooncake

#endif  // SUNRISE_LINK_TENT_SUNRISE_LINK_TRANSPORT_H
