// sunrise-link: SunriseLinkTransport for Mooncake TENT, over the C ABI of libsunrise_link.so.
//
// Everything that moves data lives in the library; this file only adapts TENT's types:
// requests, statuses, buffer descriptors, the segment manager (remote lookups), glog (logs)
// and SubBatch::notifyProgress (progress). Library status codes are numbered as TENT's
// Status::Code, so fromCode() is a plain switch.

#include "tent/transport/sunrise_link/sunrise_link_transport.h"

#include <glog/logging.h>

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <mutex>
#include <new>
#include <string>
#include <typeinfo>
#include <vector>

#include "sunrise_link_loader.h"
#include "tent/common/config.h"
#include "tent/runtime/segment.h"
#include "tent/runtime/segment_manager.h"
#include "tent/thirdparty/nlohmann/json.h"

namespace mooncake {
namespace tent {

namespace {

using sunrise_link_cpp::copyFixed;
using sunrise_link_cpp::isDeviceLocation;

TransferStatusEnum toTransferStatus(int32_t s) {
    switch (s) {
        case SUNRISE_LINK_TASK_INITIAL:
            return INITIAL;
        case SUNRISE_LINK_TASK_PENDING:
            return PENDING;
        case SUNRISE_LINK_TASK_INVALID:
            return INVALID;
        case SUNRISE_LINK_TASK_CANCELED:
            return CANCELED;
        case SUNRISE_LINK_TASK_COMPLETED:
            return COMPLETED;
        case SUNRISE_LINK_TASK_TIMEOUT:
            return TIMEOUT;
        default:
            return FAILED;
    }
}

// The handle of a SUNRISE_LINK buffer: our own transport attribute first (other transports
// registered after us may have overwritten the shared shm_path, e.g. SHM with a POSIX shm
// name), else shm_path as written by upstream peers.
const std::string& sunriseHandleOf(const BufferDesc& desc) {
    auto it = desc.transport_attrs.find(SUNRISE_LINK);
    if (it != desc.transport_attrs.end() && !it->second.empty()) return it->second;
    return desc.shm_path;
}

bool listsSunriseLink(const BufferDesc& desc) {
    return std::find(desc.transports.begin(), desc.transports.end(), SUNRISE_LINK) !=
           desc.transports.end();
}

}  // namespace

SunriseLinkTransport::SunriseLinkTransport() = default;

SunriseLinkTransport::~SunriseLinkTransport() { uninstall(); }

Status SunriseLinkTransport::fromCode(int32_t rc, const std::string& what) const {
    if (rc == SUNRISE_LINK_OK) return Status::OK();
    std::string msg = "sunrise_link: " + what;
    const char* detail = api_.last_error ? api_.last_error() : nullptr;
    if (detail && *detail) msg += ": " + std::string(detail);
    switch (rc) {
        case SUNRISE_LINK_INVALID_ARGUMENT:
            return Status::InvalidArgument(msg);
        case SUNRISE_LINK_TOO_MANY_REQUESTS:
            return Status::TooManyRequests(msg);
        case SUNRISE_LINK_ADDRESS_NOT_REGISTERED:
            return Status::AddressNotRegistered(msg);
        case SUNRISE_LINK_DEVICE_NOT_FOUND:
            return Status::DeviceNotFound(msg);
        case SUNRISE_LINK_INVALID_ENTRY:
            return Status::InvalidEntry(msg);
        case SUNRISE_LINK_INVALID_METADATA_TYPE:
            return Status::InvalidMetadataType(msg);
        case SUNRISE_LINK_NEEDS_REFRESH_CACHE:
            return Status::NeedsRefreshCache(msg);
        case SUNRISE_LINK_RDMA_ERROR:
            return Status::RdmaError(msg);
        case SUNRISE_LINK_RUNTIME_ERROR:
            return Status::CudaError(msg);
        case SUNRISE_LINK_METADATA_ERROR:
            return Status::MetadataError(msg);
        case SUNRISE_LINK_RPC_SERVICE_ERROR:
            return Status::RpcServiceError(msg);
        case SUNRISE_LINK_MALFORMED_JSON:
            return Status::MalformedJson(msg);
        case SUNRISE_LINK_NOT_IMPLEMENTED:
            return Status::NotImplemented(msg);
        case SUNRISE_LINK_INTERNAL_ERROR:
            return Status::InternalError(msg);
        default:
            return Status::InternalError(msg + " (unknown status code " +
                                         std::to_string(rc) + ")");
    }
}

SunriseLinkSubBatch* SunriseLinkTransport::checkedBatch(SubBatchRef batch) const {
    // An exact type check (cheaper than dynamic_cast on every request; nothing derives from
    // SunriseLinkSubBatch), then the owner.
    if (!batch || typeid(*batch) != typeid(SunriseLinkSubBatch)) return nullptr;
    auto* b = static_cast<SunriseLinkSubBatch*>(batch);
    return b->owner == this ? b : nullptr;
}

// ---------------------------------------------------------------------------------------
// Host callbacks

int32_t SunriseLinkTransport::lookupRemoteBuffer(void* user_data, uint64_t segment_id,
                                                 uint64_t addr, uint64_t length,
                                                 int32_t refresh,
                                                 sunrise_link_remote_buffer_t* out) {
    auto* self = static_cast<SunriseLinkTransport*>(user_data);
    if (!self || !out || !self->metadata_) return SUNRISE_LINK_INVALID_ARGUMENT;
    try {
        auto& manager = self->metadata_->segmentManager();
        if (refresh && segment_id != LOCAL_SEGMENT_ID) manager.invalidateRemote(segment_id);
        sunrise_link_remote_buffer_t found{};
        Status s = manager.withCachedSegment(segment_id, [&](SegmentDesc* desc) -> Status {
            if (!desc) return Status::InvalidEntry("segment has no descriptor");
            BufferDesc* buf = desc->findBuffer(addr, length);
            if (!buf) {
                return Status::NeedsRefreshCache("no registered buffer holds the range");
            }
            const std::string& handle = sunriseHandleOf(*buf);
            if (!listsSunriseLink(*buf) || handle.empty()) {
                return Status::NeedsRefreshCache("buffer is not registered with sunrise_link");
            }
            found.base = buf->addr;
            found.length = buf->length;
            if (!copyFixed(found.location, buf->location) ||
                !copyFixed(found.shm_path, handle) ||
                !copyFixed(found.machine_id, desc->machine_id)) {
                return Status::InvalidEntry("buffer descriptor field too long");
            }
            return Status::OK();
        });
        if (!s.ok()) {
            VLOG(1) << "[sunrise_link] lookup of segment " << segment_id << " addr 0x"
                    << std::hex << addr << std::dec << "+" << length << ": " << s.ToString();
            return static_cast<int32_t>(s.code());
        }
        *out = found;
        return SUNRISE_LINK_OK;
    } catch (const std::exception& e) {
        LOG(ERROR) << "[sunrise_link] lookup of segment " << segment_id << " failed: "
                   << e.what();
        return SUNRISE_LINK_INTERNAL_ERROR;
    } catch (...) {
        return SUNRISE_LINK_INTERNAL_ERROR;
    }
}

void SunriseLinkTransport::notifyProgress(void* user_data, uint64_t progress_token) {
    // The token is the sub-batch's address; the library reports progress only inside our own
    // calls and never after sub_batch_free has returned, so the object is alive.
    if (!user_data || !progress_token) return;
    reinterpret_cast<SunriseLinkSubBatch*>(static_cast<uintptr_t>(progress_token))
        ->notifyProgress();
}

// ---------------------------------------------------------------------------------------
// Install / uninstall

Status SunriseLinkTransport::install(std::string& local_segment_name,
                                     std::shared_ptr<ControlService> metadata,
                                     std::shared_ptr<Topology> local_topology,
                                     std::shared_ptr<Config> conf) {
    (void)local_segment_name;
    (void)local_topology;
    if (installed_.load()) {
        return Status::InvalidArgument("sunrise_link: already installed" LOC_MARK);
    }
    if (!metadata) {
        return Status::InvalidArgument("sunrise_link: install without a control service");
    }

    std::string configured;
    std::string config_json;
    bool have_subtree = false;
    if (conf) {
        configured = conf->get(sunrise_link_cpp::kLibraryPathKey, "");
        have_subtree = conf->dumpSubtree("transports/sunrise_link", &config_json);
    }

    sunrise_link_transport_plugin_t table{};
    std::string origin;
    std::string why;
    if (!sunrise_link_cpp::loadTransportPlugin(configured, &table, &origin, &why)) {
        return Status::InternalError(why);
    }
    api_ = table;

    // The config subtree minus our own key (the library warns about keys it does not know).
    const char* json_arg = nullptr;
    if (have_subtree) {
        try {
            auto j = nlohmann::json::parse(config_json);
            if (j.is_object()) j.erase("library_path");
            config_json = j.dump();
            json_arg = config_json.c_str();
        } catch (const std::exception& e) {
            return Status::MalformedJson(std::string("sunrise_link: config subtree: ") +
                                         e.what());
        }
    }

    metadata_ = std::move(metadata);
    conf_ = std::move(conf);
    {
        auto local = metadata_->segmentManager().getLocal();
        local_machine_id_ = local ? local->machine_id : std::string();
    }

    sunrise_link_host_callbacks_t cb{};
    cb.abi_version = SUNRISE_LINK_ABI_VERSION;
    cb.struct_size = sizeof(cb);
    cb.user_data = this;
    cb.lookup_remote_buffer = &SunriseLinkTransport::lookupRemoteBuffer;
    cb.log = &sunrise_link_cpp::logToGlog;
    cb.notify_progress = &SunriseLinkTransport::notifyProgress;
    cb.local_machine_id = local_machine_id_.c_str();

    sunrise_link_transport_t* t = nullptr;
    int32_t rc = api_.create(&cb, &t);
    if (rc != SUNRISE_LINK_OK || !t) {
        Status s = fromCode(rc ? rc : SUNRISE_LINK_INTERNAL_ERROR, "create");
        metadata_.reset();
        return s;
    }
    rc = api_.install(t, json_arg);
    if (rc != SUNRISE_LINK_OK) {
        Status s = fromCode(rc, "install (" + origin + ")");
        api_.destroy(t);
        metadata_.reset();
        return s;
    }
    rc = api_.capabilities_get(t, &lib_caps_);
    if (rc != SUNRISE_LINK_OK) {
        Status s = fromCode(rc, "capabilities");
        api_.destroy(t);
        metadata_.reset();
        return s;
    }
    caps.dram_to_dram = lib_caps_.dram_to_dram != 0;
    caps.dram_to_gpu = lib_caps_.dram_to_gpu != 0;
    caps.gpu_to_dram = lib_caps_.gpu_to_dram != 0;
    caps.gpu_to_gpu = lib_caps_.gpu_to_gpu != 0;
    caps.dram_to_file = lib_caps_.dram_to_file != 0;
    caps.gpu_to_file = lib_caps_.gpu_to_file != 0;

    handle_ = t;
    library_origin_ = origin;
    installed_.store(true);
    LOG(INFO) << "Transport sunrise_link: library " << api_.version() << " loaded from "
              << library_origin_;
    return Status::OK();
}

Status SunriseLinkTransport::uninstall() {
    if (!installed_.exchange(false)) return Status::OK();
    drainPool();
    int32_t rc = api_.uninstall(handle_);
    Status s = fromCode(rc, "uninstall");
    api_.destroy(handle_);
    handle_ = nullptr;
    metadata_.reset();
    conf_.reset();
    caps = Capabilities{};
    return s;
}

// ---------------------------------------------------------------------------------------
// Sub-batches, submit, poll, cancel

size_t SunriseLinkTransport::poolShard() {
    static std::atomic<size_t> next{0};
    thread_local size_t shard = next.fetch_add(1, std::memory_order_relaxed) % kPoolShards;
    return shard;
}

SunriseLinkSubBatch* SunriseLinkTransport::takePooled() {
    PoolShard& s = pool_[poolShard()];
    SunriseLinkSubBatch* b = nullptr;
    while (s.lock.test_and_set(std::memory_order_acquire)) {
    }
    if (!s.items.empty()) {
        b = s.items.back();
        s.items.pop_back();
    }
    s.lock.clear(std::memory_order_release);
    return b;
}

bool SunriseLinkTransport::pool(SunriseLinkSubBatch* b) {
    PoolShard& s = pool_[poolShard()];
    bool kept = false;
    while (s.lock.test_and_set(std::memory_order_acquire)) {
    }
    if (s.items.size() < kPooledPerShard) {
        s.items.push_back(b);
        kept = true;
    }
    s.lock.clear(std::memory_order_release);
    return kept;
}

void SunriseLinkTransport::drainPool() {
    for (PoolShard& s : pool_) {
        while (s.lock.test_and_set(std::memory_order_acquire)) {
        }
        std::vector<SunriseLinkSubBatch*> items;
        items.swap(s.items);
        s.lock.clear(std::memory_order_release);
        for (SunriseLinkSubBatch* b : items) {
            if (handle_) api_.sub_batch_free(handle_, b->handle);
            delete b;
        }
    }
}

namespace {

uint64_t tokenOf(SunriseLinkSubBatch* b) {
    return static_cast<uint64_t>(reinterpret_cast<uintptr_t>(b));
}

// Most tasks of a sub-batch whose lengths are kept for answering statuses here (8 MiB);
// a larger sub-batch asks the library for every status.
constexpr size_t kMaxKeptLengths = size_t(1) << 20;

// A fresh (or renewed) sub-batch of max_size tasks: nothing submitted, nothing known done,
// room for max_size lengths (allocated only when it grows).
void startOver(SunriseLinkSubBatch* b, size_t max_size) {
    b->max_size = max_size;
    b->submitted.store(0, std::memory_order_relaxed);
    b->known_done.store(0, std::memory_order_relaxed);
    if (b->lens_cap < max_size && max_size <= kMaxKeptLengths) {
        b->lens.reset(new (std::nothrow) uint64_t[max_size]);
        b->lens_cap = b->lens ? max_size : 0;
    }
}

}  // namespace

bool SunriseLinkTransport::renewPooled(SunriseLinkSubBatch* b, size_t max_size) {
    // The library accepted max_size before for this sub-batch (its limit is fixed while
    // installed): the renewal can wait for the first submit.
    if (api_.submit_ex && max_size != 0 && max_size <= b->max_size) {
        b->renew_pending = true;
    } else {
        uint64_t renewed = 0;
        if (api_.sub_batch_recycle(handle_, b->handle, max_size, tokenOf(b), &renewed) !=
            SUNRISE_LINK_OK) {
            return false;
        }
        b->handle = renewed;
        b->renew_pending = false;
    }
    startOver(b, max_size);
    return true;
}

Status SunriseLinkTransport::renewIfPending(SunriseLinkSubBatch* b) {
    if (!b->renew_pending) return Status::OK();
    uint64_t renewed = 0;
    int32_t rc = api_.sub_batch_recycle(handle_, b->handle, b->max_size, tokenOf(b), &renewed);
    if (rc != SUNRISE_LINK_OK) return fromCode(rc, "sub-batch renew");
    b->handle = renewed;
    b->renew_pending = false;
    return Status::OK();
}

Status SunriseLinkTransport::allocateSubBatch(SubBatchRef& batch, size_t max_size) {
    if (!installed_.load()) {
        return Status::InvalidArgument("sunrise_link: not installed" LOC_MARK);
    }
    if (SunriseLinkSubBatch* p = api_.sub_batch_recycle ? takePooled() : nullptr) {
        if (renewPooled(p, max_size)) {
            batch = p;
            return Status::OK();
        }
        // Refused (e.g. a size out of range): the old one is still live.
        api_.sub_batch_free(handle_, p->handle);
        delete p;
    }
    auto* b = new SunriseLinkSubBatch(this, max_size);
    int32_t rc = api_.sub_batch_allocate(handle_, max_size, tokenOf(b), &b->handle);
    if (rc != SUNRISE_LINK_OK) {
        delete b;
        return fromCode(rc, "sub-batch allocate (" + std::to_string(max_size) + " tasks)");
    }
    startOver(b, max_size);
    batch = b;
    return Status::OK();
}

Status SunriseLinkTransport::freeSubBatch(SubBatchRef& batch) {
    auto* b = checkedBatch(batch);
    if (!b) return Status::InvalidArgument("sunrise_link: not a sunrise_link sub-batch");
    if (installed_.load() && api_.sub_batch_recycle) {
        // Kept for the next allocation as a fresh TENT sub-batch: nothing of this one's
        // progress reporting is kept.
        b->notify_progress = nullptr;
        b->progress_batch_id = 0;
        b->device_mask = ~0ULL;
        b->qp_pool.clear();
        if (pool(b)) {
            batch = nullptr;
            return Status::OK();
        }
    }
    Status s = Status::OK();
    if (installed_.load()) s = fromCode(api_.sub_batch_free(handle_, b->handle), "sub-batch free");
    delete b;
    batch = nullptr;
    return s;
}

Status SunriseLinkTransport::submitTransferTasks(SubBatchRef batch,
                                                 const std::vector<Request>& request_list) {
    auto* b = checkedBatch(batch);
    if (!b) return Status::InvalidArgument("sunrise_link: not a sunrise_link sub-batch");
    if (!installed_.load()) return Status::InvalidArgument("sunrise_link: not installed");
    // The library's requests: on the stack for the usual few, else in a per-thread vector.
    constexpr size_t kOnStack = 32;
    sunrise_link_request_t on_stack[kOnStack];
    thread_local std::vector<sunrise_link_request_t> spill;
    const size_t count = request_list.size();
    sunrise_link_request_t* reqs = on_stack;
    if (count > kOnStack) {
        spill.resize(count);
        reqs = spill.data();
    }
    for (size_t i = 0; i < count; ++i) {
        const Request& r = request_list[i];
        sunrise_link_request_t& q = reqs[i];
        q = sunrise_link_request_t{};
        q.opcode = r.opcode == Request::WRITE ? SUNRISE_LINK_OP_WRITE : SUNRISE_LINK_OP_READ;
        q.source = r.source;
        q.target_id = r.target_id;
        q.target_offset = r.target_offset;
        q.length = r.length;
    }
    if (!api_.submit_ex) {
        int32_t rc = api_.submit(handle_, b->handle, reqs, count);
        if (rc != SUNRISE_LINK_OK) return fromCode(rc, "submit");
        b->submitted.fetch_add(count, std::memory_order_acq_rel);
        return Status::OK();
    }
    sunrise_link_submit_ex_t io{};
    if (b->renew_pending) {
        io.flags = SUNRISE_LINK_SUBMIT_RENEW;
        io.max_size = b->max_size;
        io.progress_token = tokenOf(b);
    }
    int32_t rc = api_.submit_ex(handle_, b->handle, reqs, count, &io);
    if (io.sub_batch != 0 && io.sub_batch != b->handle) {
        b->handle = io.sub_batch;  // renewed (also when the submit after it failed)
        b->renew_pending = false;
    }
    if (rc != SUNRISE_LINK_OK) return fromCode(rc, "submit");
    // Tasks that completed in full are answered here from now on, if they extend the run of
    // such tasks from task 0 (the only run kept).
    uint64_t first = io.first_task;
    uint64_t n = std::min<uint64_t>(io.completed, count);
    if (n > 0 && first + n <= b->lens_cap &&
        b->known_done.load(std::memory_order_relaxed) == first) {
        for (uint64_t i = 0; i < n; ++i) b->lens[first + i] = reqs[i].length;
        uint64_t expected = first;
        b->known_done.compare_exchange_strong(expected, first + n, std::memory_order_release,
                                              std::memory_order_relaxed);
    }
    b->submitted.fetch_add(count, std::memory_order_acq_rel);
    return Status::OK();
}

Status SunriseLinkTransport::getTransferStatus(SubBatchRef batch, int task_id,
                                               TransferStatus& status) {
    auto* b = checkedBatch(batch);
    if (!b) return Status::InvalidArgument("sunrise_link: not a sunrise_link sub-batch");
    if (!installed_.load()) return Status::InvalidArgument("sunrise_link: not installed");
    if (task_id < 0) return Status::InvalidArgument("sunrise_link: negative task id");
    if (static_cast<uint64_t>(task_id) < b->known_done.load(std::memory_order_acquire)) {
        status.s = COMPLETED;
        status.transferred_bytes = static_cast<size_t>(b->lens[task_id]);
        return Status::OK();
    }
    Status renewed = renewIfPending(b);
    if (!renewed.ok()) return renewed;
    sunrise_link_task_status_t st{};
    int32_t rc = api_.task_status_get(handle_, b->handle, static_cast<uint64_t>(task_id), &st);
    if (rc != SUNRISE_LINK_OK) {
        return fromCode(rc, "status of task " + std::to_string(task_id));
    }
    status.s = toTransferStatus(st.status);
    status.transferred_bytes = static_cast<size_t>(st.transferred_bytes);
    if (status.s == FAILED && VLOG_IS_ON(1)) {
        char msg[512] = {0};
        if (api_.task_error_get(handle_, b->handle, static_cast<uint64_t>(task_id), msg,
                                sizeof(msg)) == SUNRISE_LINK_OK) {
            VLOG(1) << "[sunrise_link] task " << task_id << " failed: " << msg;
        }
    }
    return Status::OK();
}

bool SunriseLinkTransport::supportsCancellation() const {
    return installed_.load() && lib_caps_.supports_cancellation != 0;
}

Status SunriseLinkTransport::cancelTransferTask(SubBatchRef batch, int task_id) {
    auto* b = checkedBatch(batch);
    if (!b) return Status::InvalidArgument("sunrise_link: not a sunrise_link sub-batch");
    if (!installed_.load()) return Status::InvalidArgument("sunrise_link: not installed");
    if (task_id < 0) return Status::InvalidArgument("sunrise_link: negative task id");
    Status renewed = renewIfPending(b);
    if (!renewed.ok()) return renewed;
    return fromCode(api_.task_cancel(handle_, b->handle, static_cast<uint64_t>(task_id)),
                    "cancel task " + std::to_string(task_id));
}

// ---------------------------------------------------------------------------------------
// Memory registration

Status SunriseLinkTransport::addMemoryBuffer(BufferDesc& desc, const MemoryOptions& options) {
    (void)options;
    if (!installed_.load()) return Status::InvalidArgument("sunrise_link: not installed");
    char handle[SUNRISE_LINK_SHM_PATH_LEN] = {0};
    int32_t rc = api_.buffer_add(handle_, reinterpret_cast<void*>(desc.addr), desc.length,
                                 desc.location.c_str(), handle, sizeof(handle));
    if (rc != SUNRISE_LINK_OK) {
        return fromCode(rc, "register buffer at " + desc.location);
    }
    // Only device memory is reachable by peers; host buffers stay local (recorded by the
    // library for local copies) and are not advertised.
    if (isDeviceLocation(desc.location) && handle[0] != '\0') {
        desc.shm_path = handle;
        desc.transport_attrs[SUNRISE_LINK] = handle;
        if (!listsSunriseLink(desc)) desc.transports.push_back(SUNRISE_LINK);
    }
    return Status::OK();
}

Status SunriseLinkTransport::addMemoryBuffer(std::vector<BufferDesc>& desc_list,
                                             const MemoryOptions& options) {
    Status first = Status::OK();
    for (auto& desc : desc_list) {
        Status s = addMemoryBuffer(desc, options);
        if (!s.ok() && first.ok()) first = s;
    }
    return first;
}

Status SunriseLinkTransport::removeMemoryBuffer(BufferDesc& desc) {
    if (!installed_.load()) return Status::OK();
    int32_t rc = api_.buffer_remove(handle_, reinterpret_cast<void*>(desc.addr), desc.length);
    auto attr = desc.transport_attrs.find(SUNRISE_LINK);
    if (attr != desc.transport_attrs.end()) {
        if (desc.shm_path == attr->second) desc.shm_path.clear();
        desc.transport_attrs.erase(attr);
    }
    // TENT calls this on every installed transport at teardown, also for buffers that were
    // never registered here.
    if (rc == SUNRISE_LINK_ADDRESS_NOT_REGISTERED) return Status::OK();
    return fromCode(rc, "unregister buffer");
}

// ---------------------------------------------------------------------------------------
// Notifications, bandwidth, segment invalidation

bool SunriseLinkTransport::supportNotification() const {
    // ABI v1 defines the slots but not the layout of received notifications, and the
    // library reports supports_notification = 0 with both slots NULL.
    return installed_.load() && lib_caps_.supports_notification != 0 &&
           api_.notification_send && api_.notification_receive && api_.abi_version > 1;
}

Status SunriseLinkTransport::sendNotification(SegmentID target_id, const Notification& notify) {
    if (!installed_.load() || !api_.notification_send) {
        return Status::NotImplemented("sunrise_link: notifications are not supported" LOC_MARK);
    }
    return fromCode(api_.notification_send(handle_, target_id, notify.name.c_str(),
                                           notify.msg.c_str()),
                    "send notification");
}

Status SunriseLinkTransport::receiveNotification(std::vector<Notification>& notify_list) {
    (void)notify_list;
    return Status::NotImplemented("sunrise_link: notifications are not supported" LOC_MARK);
}

double SunriseLinkTransport::getEstimatedBandwidth() const {
    if (!installed_.load()) return -1.0;
    double bw = -1.0;
    if (api_.bandwidth_get(handle_, &bw) != SUNRISE_LINK_OK) return -1.0;
    return bw;
}

Status SunriseLinkTransport::invalidateSegment(SegmentID target_id) {
    if (!installed_.load()) return Status::InvalidArgument("sunrise_link: not installed");
    return fromCode(api_.segment_invalidate(handle_, target_id), "invalidate segment");
}

}  // namespace tent
}  // namespace mooncake
