// sunrise-link: SunriseLinkTransport for Mooncake's classic Transfer Engine, over the C ABI of
// libsunrise_link.so (the same library and ABI as the TENT drop-in).
//
// The classic engine keeps its tasks in BatchDesc::task_list and counts their slices; the
// library keeps its own tasks in sub-batches. This file joins the two:
//
//   * one Submission per submitTransferTask call (a library sub-batch, one library task per
//     request, at most kMaxSubmission requests each);
//   * one Slice per request, pushed to the task's slice_list like every classic transport
//     does, which carries (Submission, index) and a cleanup callback: the TransferTask's
//     destructor (freeBatchID) hands the slice back, and the last one frees the sub-batch
//     or, when the library can renew it in place, keeps it for a later submit (which renews
//     it: with the submit itself on a library of ABI 3, else with sub_batch_recycle);
//   * a library task that has ended is "claimed" once (an atomic flag per request) and its
//     slice marked success or failure: right after the submit for the copies the library
//     carried out inside it (so USE_EVENT_DRIVEN_COMPLETION waiters see them end; with ABI 3
//     the submit says which completed, and only the others are asked about), else by
//     the getTransferStatus that finds it ended (asynchronous copies end on a status query).
//     No progress callback: it would run inside the library's own calls, where asking the
//     library for a status is not allowed to nest.
//
// Remote buffers are looked up through TransferMetadata (getSegmentDescByID, forced when the
// library asks for a refresh); registration publishes what upstream publishes (BufferDesc name
// = location, shm_name = the IPC handle in uppercase hex) for device memory and an empty
// shm_name for host memory (see registerLocalMemory).

#include "transport/sunrise_link_transport/sunrise_link_transport.h"

#include <glog/logging.h>

#include <atomic>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "memory_location.h"
#include "sunrise_link_loader.h"

namespace sunrise_link_cpp {

using mooncake::Status;
using mooncake::Transport;

struct Submission;

struct ClassicCore {
    sunrise_link_transport_plugin_t api{};
    // The library transport; null before install and once the owner is destroyed. Written
    // under `life`; read without it only by the owner's own methods (it outlives them).
    sunrise_link_transport_t* handle = nullptr;
    std::mutex life;
    std::string origin;
    std::shared_ptr<mooncake::TransferMetadata> metadata;

    // Finished submissions whose library sub-batch is kept to be renewed in place
    // (sub_batch_recycle) by a later submit; they hold no reference to the core. Filled
    // under `life` while the library transport is live; emptied by the owner's destructor.
    std::mutex pool_mutex;
    std::vector<Submission*> pool;
};

// One library sub-batch and the slices of the requests submitted to it.
struct Submission {
    struct Request {
        std::atomic<bool> claimed{false};  // its end has been (or is being) reported
        Transport::Slice* slice = nullptr;
    };

    Submission(std::shared_ptr<ClassicCore> c, size_t n)
        : core(std::move(c)), count(n), capacity(n), requests(new Request[n]) {}

    // Makes a pooled submission ready for `n` requests (its sub-batch already renewed).
    void reuse(std::shared_ptr<ClassicCore> c, size_t n) {
        core = std::move(c);
        if (capacity < n) {
            requests.reset(new Request[n]);
            capacity = n;
        } else {
            for (size_t i = 0; i < n; ++i) {
                requests[i].claimed.store(false, std::memory_order_relaxed);
                requests[i].slice = nullptr;
            }
        }
        count = n;
    }

    std::shared_ptr<ClassicCore> core;
    size_t count;     // requests of the current use
    size_t capacity;  // size of `requests`
    std::unique_ptr<Request[]> requests;
    uint64_t sub_batch = 0;
    // Taken from the pool with a library of ABI 3: the submit renews the sub-batch
    // (sunrise_link_transfer_submit_ex with SUNRISE_LINK_SUBMIT_RENEW).
    bool renew = false;
    std::atomic<size_t> live{0};  // slices not yet handed back (+1 while submitting)
};

namespace {

// Requests per library sub-batch; larger calls are split (the library's own limit is
// configurable and defaults to 2^20).
constexpr size_t kMaxSubmission = size_t(1) << 16;

// A library status code as the classic engine's Status code and int error code.
struct ClassicError {
    Status::Code code;
    int err;
};

ClassicError classicError(int32_t rc) {
    switch (rc) {
        case SUNRISE_LINK_INVALID_ARGUMENT:
            return {Status::Code::kInvalidArgument, ERR_INVALID_ARGUMENT};
        case SUNRISE_LINK_TOO_MANY_REQUESTS:
            return {Status::Code::kTooManyRequests, ERR_TOO_MANY_REQUESTS};
        case SUNRISE_LINK_ADDRESS_NOT_REGISTERED:
            return {Status::Code::kAddressNotRegistered, ERR_ADDRESS_NOT_REGISTERED};
        case SUNRISE_LINK_DEVICE_NOT_FOUND:
            return {Status::Code::kDeviceNotFound, ERR_DEVICE_NOT_FOUND};
        case SUNRISE_LINK_INVALID_ENTRY:
        case SUNRISE_LINK_NEEDS_REFRESH_CACHE:
            return {Status::Code::kMetadata, ERR_METADATA};
        case SUNRISE_LINK_NOT_IMPLEMENTED:
            return {Status::Code::kNotImplemented, ERR_NOT_IMPLEMENTED};
        case SUNRISE_LINK_RUNTIME_ERROR:
            // The device runtime failed or could not be loaded: the classic engine's code for
            // a device context.
            return {Status::Code::kContext, ERR_CONTEXT};
        default:
            return {Status::Code::kMemory, ERR_MEMORY};
    }
}

// "sunrise_link: <what>: <the library's message>".
std::string describe(const ClassicCore& core, const std::string& what) {
    std::string msg = "sunrise_link: " + what;
    const char* detail = core.api.last_error ? core.api.last_error() : nullptr;
    if (detail && *detail) msg += ": " + std::string(detail);
    return msg;
}

Status toStatus(const ClassicCore& core, int32_t rc, const std::string& what) {
    if (rc == SUNRISE_LINK_OK) return Status::OK();
    return Status(classicError(rc).code, describe(core, what));
}

bool rangeInside(uint64_t addr, uint64_t length, uint64_t base, uint64_t base_length) {
    if (addr < base) return false;
    uint64_t offset = addr - base;
    return offset <= base_length && length <= base_length - offset;
}

// The shm_name upstream publishes when it has no IPC handle for a buffer.
constexpr const char* kRawAddrPrefix = "RAW_ADDR:";

int32_t lookupRemoteBuffer(void* user_data, uint64_t segment_id, uint64_t addr,
                           uint64_t length, int32_t refresh, sunrise_link_remote_buffer_t* out) {
    auto* core = static_cast<ClassicCore*>(user_data);
    if (!core || !out || !core->metadata) return SUNRISE_LINK_INVALID_ARGUMENT;
    try {
        auto desc = core->metadata->getSegmentDescByID(segment_id, refresh != 0);
        if (!desc) {
            VLOG(1) << "[sunrise_link] segment " << segment_id << " is not known to the metadata";
            return SUNRISE_LINK_INVALID_ENTRY;
        }
        for (const auto& buf : desc->buffers) {
            if (buf.shm_name.empty() || !rangeInside(addr, length, buf.addr, buf.length)) {
                continue;
            }
            if (buf.shm_name.compare(0, std::strlen(kRawAddrPrefix), kRawAddrPrefix) == 0) {
                LOG_EVERY_N(WARNING, 1000)
                    << "[sunrise_link] segment " << desc->name << " buffer 0x" << std::hex
                    << buf.addr << std::dec << " (" << buf.name << ") was published as "
                    << buf.shm_name << ", without a Tang IPC handle (the upstream transport "
                    << "does that for memory its own allocator did not hand out): it cannot "
                    << "be reached from another process";
            }
            sunrise_link_remote_buffer_t found{};
            found.base = buf.addr;
            found.length = buf.length;
            if (!copyFixed(found.location, buf.name) || !copyFixed(found.shm_path, buf.shm_name)) {
                return SUNRISE_LINK_INVALID_ENTRY;
            }
            // The classic segment descriptor carries no machine id: no same-machine check.
            found.machine_id[0] = '\0';
            *out = found;
            return SUNRISE_LINK_OK;
        }
        VLOG(1) << "[sunrise_link] segment " << desc->name << " has no sunrise_link buffer holding 0x"
                << std::hex << addr << std::dec << "+" << length;
        return SUNRISE_LINK_ADDRESS_NOT_REGISTERED;
    } catch (const std::exception& e) {
        LOG(ERROR) << "[sunrise_link] lookup of segment " << segment_id << " failed: " << e.what();
        return SUNRISE_LINK_INTERNAL_ERROR;
    } catch (...) {
        return SUNRISE_LINK_INTERNAL_ERROR;
    }
}

// Reports the end of request `i` (status `st`) on its slice, once.
void finishRequest(Submission* sub, size_t i, const sunrise_link_task_status_t& st) {
    auto& r = sub->requests[i];
    if (r.claimed.exchange(true, std::memory_order_acq_rel)) return;
    Transport::Slice* slice = r.slice;
    if (st.status == SUNRISE_LINK_TASK_COMPLETED) {
        slice->markSuccess();
        return;
    }
    // The library logs every failure at ERROR (rate-limited); the task's own message here.
    if (VLOG_IS_ON(1)) {
        ClassicCore& core = *sub->core;
        char msg[512] = {0};
        if (core.handle &&
            core.api.task_error_get(core.handle, sub->sub_batch, i, msg, sizeof(msg)) !=
                SUNRISE_LINK_OK) {
            msg[0] = '\0';
        }
        VLOG(1) << "[sunrise_link] transfer of " << slice->length << " bytes "
                << (slice->opcode == Transport::TransferRequest::READ ? "from" : "to")
                << " segment " << slice->target_id << " failed: " << (msg[0] ? msg : "(no message)");
    }
    slice->markFailed();
}

// Asks the library about request `i` and reports it if it has ended. False while it runs.
bool pollRequest(Submission* sub, size_t i) {
    auto& r = sub->requests[i];
    if (r.claimed.load(std::memory_order_acquire)) return true;
    ClassicCore& core = *sub->core;
    sunrise_link_transport_t* handle = core.handle;
    if (!handle) return false;
    sunrise_link_task_status_t st{};
    if (core.api.task_status_get(handle, sub->sub_batch, i, &st) != SUNRISE_LINK_OK) {
        st.status = SUNRISE_LINK_TASK_FAILED;
    } else if (st.status == SUNRISE_LINK_TASK_INITIAL || st.status == SUNRISE_LINK_TASK_PENDING) {
        return false;
    }
    finishRequest(sub, i, st);
    return true;
}

// Frees a submission whose slices have all been handed back.
// Submissions kept for renewal; beyond that their sub-batches are freed.
constexpr size_t kPooledSubmissions = 64;

// Frees a submission whose slices have all been handed back, or keeps it (with its library
// sub-batch) for a later submit when the library can renew a sub-batch in place.
void destroySubmission(Submission* sub) {
    std::shared_ptr<ClassicCore> keep = std::move(sub->core);
    ClassicCore& core = *keep;
    {
        std::lock_guard<std::mutex> life(core.life);
        if (core.handle && sub->sub_batch) {
            if (core.api.sub_batch_recycle) {
                std::lock_guard<std::mutex> lock(core.pool_mutex);
                if (core.pool.size() < kPooledSubmissions) {
                    core.pool.push_back(sub);
                    return;
                }
            }
            int32_t rc = core.api.sub_batch_free(core.handle, sub->sub_batch);
            if (rc != SUNRISE_LINK_OK) {
                LOG(WARNING) << describe(core, "freeing a sub-batch");
            }
        }
    }
    delete sub;
}

// A submission for `n` requests: a pooled one whose sub-batch the library renews in place,
// else a new one with a new sub-batch. Null with *rc set when the library refuses.
Submission* takeSubmission(const std::shared_ptr<ClassicCore>& core, size_t n, int32_t* rc) {
    Submission* sub = nullptr;
    if (core->api.sub_batch_recycle) {
        std::lock_guard<std::mutex> lock(core->pool_mutex);
        if (!core->pool.empty()) {
            sub = core->pool.back();
            core->pool.pop_back();
        }
    }
    if (sub && core->api.submit_ex) {
        sub->renew = true;
        sub->reuse(core, n);
        return sub;
    }
    if (sub) {
        uint64_t renewed = 0;
        *rc = core->api.sub_batch_recycle(core->handle, sub->sub_batch, n, 0, &renewed);
        if (*rc == SUNRISE_LINK_OK) {
            sub->sub_batch = renewed;
            sub->reuse(core, n);
            return sub;
        }
        // Refused (a size out of range): the old sub-batch is still live.
        core->api.sub_batch_free(core->handle, sub->sub_batch);
        delete sub;
    }
    sub = new Submission(core, n);
    *rc = core->api.sub_batch_allocate(core->handle, n, 0, &sub->sub_batch);
    if (*rc != SUNRISE_LINK_OK) {
        delete sub;
        return nullptr;
    }
    return sub;
}

void dropReference(Submission* sub) {
    if (sub->live.fetch_sub(1, std::memory_order_acq_rel) == 1) destroySubmission(sub);
}

// The slice's cleanup callback: the TransferTask holding it is being destroyed.
void releaseSlice(Transport::Slice* slice) {
    auto* sub = static_cast<Submission*>(slice->local.cuda_stream);
    if (!sub) return;
    slice->local.cuda_stream = nullptr;
    dropReference(sub);
}

// Fills a slice for request `req` of `task` and appends it to the task (slice_count + 1).
void initSlice(Transport::Slice* slice, Transport::TransferTask* task,
               const Transport::TransferRequest& req) {
    slice->source_addr = static_cast<char*>(req.source);
    slice->length = req.length;
    slice->opcode = req.opcode;
    slice->target_id = req.target_id;
    slice->task = task;
    slice->status = Transport::Slice::PENDING;
    slice->ts = 0;  // no slice timeout: every library task ends by itself
    slice->local.dest_addr = reinterpret_cast<void*>(req.target_offset);
    slice->local.cuda_stream = nullptr;
    slice->local.cuda_device = -1;
    task->slice_list.push_back(slice);
    task->total_bytes += req.length;
    __atomic_fetch_add(&task->slice_count, 1, __ATOMIC_RELEASE);
}

// The location to register `addr` at: "*" (or "") is resolved the way the classic engine
// resolves it for its other transports, so device memory is published as "cuda:N".
std::string resolveLocation(void* addr, size_t length, const std::string& location) {
    if (!location.empty() && location != mooncake::kWildcardLocation) return location;
    auto entries = mooncake::getMemoryLocation(addr, length, true);
    if (!entries.empty() && !entries[0].location.empty()) return entries[0].location;
    return mooncake::kWildcardLocation;
}

}  // namespace
}  // namespace sunrise_link_cpp

namespace mooncake {

using sunrise_link_cpp::ClassicCore;
using sunrise_link_cpp::Submission;

int SunriseLinkTransport::parseDeviceIdForTest(const std::string& location) {
    size_t colon = location.rfind(':');
    if (colon == std::string::npos) return -1;
    const char* digits = location.c_str() + colon + 1;
    // strtol would also take leading spaces and a sign; a device index has neither.
    if (*digits < '0' || *digits > '9') return -1;
    errno = 0;
    char* end = nullptr;
    long v = std::strtol(digits, &end, 10);
    if (errno != 0 || *end != '\0' || v > INT_MAX) return -1;
    return static_cast<int>(v);
}

bool SunriseLinkTransport::requestRangeFitsInBufferForTest(uint64_t dest_addr,
                                                           uint64_t length,
                                                           uint64_t buffer_addr,
                                                           uint64_t buffer_length) {
    return sunrise_link_cpp::rangeInside(dest_addr, length, buffer_addr, buffer_length);
}

SunriseLinkTransport::SunriseLinkTransport() : core_(std::make_shared<ClassicCore>()) {}

SunriseLinkTransport::~SunriseLinkTransport() {
    sunrise_link_transport_t* t = core_->handle;
    if (!t) return;
    // Uninstall first, with the handle still valid for the progress callbacks it causes:
    // queued tasks fail, in-flight copies drain, mappings close. Batches still alive keep
    // core_ (and their slices) valid; their sub-batches go with the library transport.
    core_->api.uninstall(t);
    {
        std::lock_guard<std::mutex> life(core_->life);
        core_->handle = nullptr;
    }
    core_->api.destroy(t);  // frees the pooled submissions' sub-batches too
    std::lock_guard<std::mutex> lock(core_->pool_mutex);
    for (Submission* sub : core_->pool) delete sub;
    core_->pool.clear();
}

int SunriseLinkTransport::install(std::string& local_server_name,
                                  std::shared_ptr<TransferMetadata> meta,
                                  std::shared_ptr<Topology> topo) {
    (void)topo;
    ClassicCore& core = *core_;
    if (core.handle) {
        LOG(ERROR) << "sunrise_link: already installed";
        return ERR_INVALID_ARGUMENT;
    }
    if (!meta) {
        LOG(ERROR) << "sunrise_link: install without metadata";
        return ERR_INVALID_ARGUMENT;
    }
    std::string why;
    // No config key for the path: the classic engine has no transport config.
    if (!sunrise_link_cpp::loadTransportPlugin("", &core.api, &core.origin, &why, nullptr)) {
        LOG(ERROR) << why;
        return ERR_INVALID_ARGUMENT;
    }
    metadata_ = meta;
    local_server_name_ = local_server_name;
    core.metadata = meta;

    sunrise_link_host_callbacks_t cb{};
    cb.abi_version = SUNRISE_LINK_ABI_VERSION;
    cb.struct_size = sizeof(cb);
    cb.user_data = &core;
    cb.lookup_remote_buffer = &sunrise_link_cpp::lookupRemoteBuffer;
    cb.log = &sunrise_link_cpp::logToGlog;
    cb.notify_progress = nullptr;  // see the top of this file
    cb.local_machine_id = nullptr;  // the classic segment descriptor has no machine id

    sunrise_link_transport_t* t = nullptr;
    int32_t rc = core.api.create(&cb, &t);
    if (rc != SUNRISE_LINK_OK || !t) {
        LOG(ERROR) << sunrise_link_cpp::describe(core, "create (" + core.origin + ")");
        core.metadata.reset();
        return sunrise_link_cpp::classicError(rc ? rc : SUNRISE_LINK_INTERNAL_ERROR).err;
    }
    // No config subtree in the classic engine: the library reads $SUNRISE_LINK_CONFIG, else
    // uses its defaults.
    rc = core.api.install(t, nullptr);
    if (rc != SUNRISE_LINK_OK) {
        LOG(ERROR) << sunrise_link_cpp::describe(core, "install (" + core.origin + ")");
        core.api.destroy(t);
        core.metadata.reset();
        return sunrise_link_cpp::classicError(rc).err;
    }
    {
        std::lock_guard<std::mutex> life(core.life);
        core.handle = t;
    }

    auto desc = std::make_shared<SegmentDesc>();
    desc->name = local_server_name_;
    desc->protocol = "sunrise_link";
    int ret = metadata_->addLocalSegment(LOCAL_SEGMENT_ID, local_server_name_, std::move(desc));
    if (ret) {
        LOG(ERROR) << "sunrise_link: adding the local segment failed: " << ret;
        return ret;
    }
    LOG(INFO) << "Transport sunrise_link (classic): library " << core.api.version()
              << " loaded from " << core.origin;
    return 0;
}

int SunriseLinkTransport::registerLocalMemory(void* addr, size_t length,
                                              const std::string& location,
                                              bool remote_accessible, bool update_metadata) {
    (void)remote_accessible;
    ClassicCore& core = *core_;
    if (!core.handle) {
        LOG(ERROR) << "sunrise_link: registerLocalMemory before install";
        return ERR_INVALID_ARGUMENT;
    }
    {
        std::lock_guard<std::mutex> lock(register_mutex_);
        if (registered_.count(addr)) return 0;  // as upstream: registered already
    }
    std::string loc = sunrise_link_cpp::resolveLocation(addr, length, location);
    char handle[SUNRISE_LINK_SHM_PATH_LEN] = {0};
    int32_t rc = core.api.buffer_add(core.handle, addr, length, loc.c_str(), handle, sizeof(handle));
    if (rc != SUNRISE_LINK_OK) {
        LOG(ERROR) << sunrise_link_cpp::describe(core, "registering a buffer at " + loc);
        return sunrise_link_cpp::classicError(rc).err;
    }
    // Device memory: the IPC handle, as upstream publishes it. Host memory: no handle. Upstream
    // publishes "RAW_ADDR:<dev>" there, which a peer in another process takes for an address
    // of its own; an empty shm_name makes peers skip the buffer (TransferMetadata drops such
    // entries when it decodes a segment), so a request for it fails cleanly instead.
    BufferDesc desc{};
    desc.name = loc;
    desc.addr = reinterpret_cast<uint64_t>(addr);
    desc.length = length;
    if (sunrise_link_cpp::isDeviceLocation(loc)) desc.shm_name = handle;
    int ret = metadata_->addLocalMemoryBuffer(desc, update_metadata);
    if (ret) {
        core.api.buffer_remove(core.handle, addr, length);
        LOG(ERROR) << "sunrise_link: publishing buffer " << addr << " failed: " << ret;
        return ret;
    }
    std::lock_guard<std::mutex> lock(register_mutex_);
    registered_[addr] = length;
    return 0;
}

int SunriseLinkTransport::unregisterOne(void* addr, bool update_metadata) {
    size_t length = 0;
    {
        std::lock_guard<std::mutex> lock(register_mutex_);
        auto it = registered_.find(addr);
        // Not ours: leave the metadata alone (another transport's entry may have this address).
        if (it == registered_.end()) return ERR_ADDRESS_NOT_REGISTERED;
        length = it->second;
        registered_.erase(it);
    }
    ClassicCore& core = *core_;
    if (core.handle) {
        int32_t rc = core.api.buffer_remove(core.handle, addr, length);
        if (rc != SUNRISE_LINK_OK && rc != SUNRISE_LINK_ADDRESS_NOT_REGISTERED) {
            LOG(WARNING) << sunrise_link_cpp::describe(core, "unregistering a buffer");
        }
    }
    return metadata_->removeLocalMemoryBuffer(addr, update_metadata);
}

int SunriseLinkTransport::unregisterLocalMemory(void* addr, bool update_metadata) {
    return unregisterOne(addr, update_metadata);
}

int SunriseLinkTransport::registerLocalMemoryBatch(const std::vector<BufferEntry>& buffer_list,
                                                   const std::string& location) {
    if (!core_->handle) {
        LOG(ERROR) << "sunrise_link: registerLocalMemoryBatch before install";
        return ERR_INVALID_ARGUMENT;
    }
    // All or nothing: on a failure the buffers this call registered are unregistered again.
    std::vector<void*> added;
    for (const auto& buffer : buffer_list) {
        bool known = false;
        {
            std::lock_guard<std::mutex> lock(register_mutex_);
            known = registered_.count(buffer.addr) != 0;
        }
        int ret = registerLocalMemory(buffer.addr, buffer.length, location, true, false);
        if (ret) {
            for (void* a : added) unregisterOne(a, false);
            metadata_->updateLocalSegmentDesc();
            return ret;
        }
        if (!known) added.push_back(buffer.addr);
    }
    return metadata_->updateLocalSegmentDesc();
}

int SunriseLinkTransport::unregisterLocalMemoryBatch(const std::vector<void*>& addr_list) {
    int first_error = 0;
    for (void* addr : addr_list) {
        int ret = unregisterOne(addr, false);
        if (ret && !first_error) first_error = ret;
    }
    int ret = metadata_ ? metadata_->updateLocalSegmentDesc() : 0;
    return first_error ? first_error : ret;
}

Status SunriseLinkTransport::submitTransfer(BatchID batch_id,
                                            const std::vector<TransferRequest>& entries) {
    if (batch_id == 0) return Status::InvalidArgument("sunrise_link: null batch");
    auto& batch = toBatchDesc(batch_id);
    if (batch.task_list.size() + entries.size() > batch.batch_size) {
        return Status::TooManyRequests("sunrise_link: the batch has room for " +
                                       std::to_string(batch.batch_size - batch.task_list.size()) +
                                       " more tasks, not " + std::to_string(entries.size()));
    }
    std::vector<TransferTask*> tasks;
    tasks.reserve(entries.size());
    for (const auto& entry : entries) {
        auto& task = batch.task_list.emplace_back();
        task.batch_id = batch_id;
        task.transport_ = this;
        task.request = &entry;
        tasks.push_back(&task);
    }
    Status s = submitTransferTask(tasks);
    // The caller's entries do not outlive this call.
    for (auto* task : tasks) task->request = nullptr;
    return s;
}

Status SunriseLinkTransport::submitTransferTask(const std::vector<TransferTask*>& task_list) {
    ClassicCore& core = *core_;
    if (!core.handle) return Status::InvalidArgument("sunrise_link: not installed");
    size_t total = 0;
    for (auto* task : task_list) {
        if (!task || !task->request || task->request_count == 0) {
            return Status::InvalidArgument("sunrise_link: a task without a request");
        }
        total += task->request_count;
    }

    thread_local std::vector<sunrise_link_request_t> reqs;
    size_t t = 0;     // next task
    size_t r_in = 0;  // next request of task t
    // Requests that never reach the library (a sub-batch could not be had, or the library
    // refused the submit) end as failed slices, so that every task still ends.
    auto failRest = [&](Status s) {
        for (; t < task_list.size(); ++t, r_in = 0) {
            TransferTask* task = task_list[t];
            for (; r_in < task->request_count; ++r_in) {
                Slice* slice = getSliceCache().allocate();
                sunrise_link_cpp::initSlice(slice, task, task->request[r_in]);
                slice->markFailed();
            }
        }
        return s;
    };
    while (total > 0) {
        size_t n = total < sunrise_link_cpp::kMaxSubmission ? total : sunrise_link_cpp::kMaxSubmission;
        int32_t rc = SUNRISE_LINK_OK;
        Submission* sub = sunrise_link_cpp::takeSubmission(core_, n, &rc);
        if (!sub) {
            return failRest(sunrise_link_cpp::toStatus(
                core, rc, "allocating a sub-batch of " + std::to_string(n) + " requests"));
        }
        reqs.clear();
        reqs.reserve(n);
        for (size_t i = 0; i < n; ++i) {
            TransferTask* task = task_list[t];
            const TransferRequest& req = task->request[r_in];
            Slice* slice = getSliceCache().allocate();
            sunrise_link_cpp::initSlice(slice, task, req);
            slice->local.cuda_stream = sub;
            slice->local.cuda_device = static_cast<int>(i);
            slice->cleanup_callback = &sunrise_link_cpp::releaseSlice;
            sub->requests[i].slice = slice;

            sunrise_link_request_t q{};
            q.opcode = req.opcode == TransferRequest::WRITE ? SUNRISE_LINK_OP_WRITE
                                                            : SUNRISE_LINK_OP_READ;
            q.source = req.source;
            q.target_id = req.target_id;
            q.target_offset = req.target_offset;
            q.length = req.length;
            reqs.push_back(q);
            if (++r_in == task->request_count) {
                ++t;
                r_in = 0;
            }
        }
        // One reference per slice, and one held by this call until it is done with `sub`: once
        // its last request is reported the batch may be freed on another thread.
        sub->live.store(n + 1, std::memory_order_release);
        size_t done = 0;  // requests the library reported completed in full
        if (core.api.submit_ex) {
            sunrise_link_submit_ex_t io{};
            if (sub->renew) {
                io.flags = SUNRISE_LINK_SUBMIT_RENEW;
                io.max_size = n;
            }
            rc = core.api.submit_ex(core.handle, sub->sub_batch, reqs.data(), reqs.size(), &io);
            if (io.sub_batch != 0 && io.sub_batch != sub->sub_batch) {
                sub->sub_batch = io.sub_batch;  // renewed (also when the submit then failed)
                sub->renew = false;
            }
            if (rc == SUNRISE_LINK_OK && io.first_task == 0) {
                done = io.completed < n ? static_cast<size_t>(io.completed) : n;
            }
        } else {
            rc = core.api.submit(core.handle, sub->sub_batch, reqs.data(), reqs.size());
        }
        if (rc != SUNRISE_LINK_OK) {
            // Nothing was queued: these requests end as failed now, so the batch can still be
            // polled to its end and freed (which frees the sub-batch).
            Status s = sunrise_link_cpp::toStatus(core, rc, "submit");
            for (size_t i = 0; i < n; ++i) {
                sunrise_link_task_status_t failed{};
                failed.status = SUNRISE_LINK_TASK_FAILED;
                sunrise_link_cpp::finishRequest(sub, i, failed);
            }
            sunrise_link_cpp::dropReference(sub);
            return failRest(s);
        }
        // Report what ended inside the submit (every synchronous copy) now: what the library
        // said completed without asking again, the rest by asking.
        sunrise_link_task_status_t completed{};
        completed.status = SUNRISE_LINK_TASK_COMPLETED;
        for (size_t i = 0; i < done; ++i) sunrise_link_cpp::finishRequest(sub, i, completed);
        for (size_t i = done; i < n; ++i) sunrise_link_cpp::pollRequest(sub, i);
        sunrise_link_cpp::dropReference(sub);
        total -= n;
    }
    return Status::OK();
}

Status SunriseLinkTransport::getTransferStatus(BatchID batch_id, size_t task_id,
                                               TransferStatus& status) {
    if (batch_id == 0) return Status::InvalidArgument("sunrise_link: null batch");
    auto& batch = toBatchDesc(batch_id);
    if (task_id >= batch.task_list.size()) {
        return Status::InvalidArgument("sunrise_link: task id " + std::to_string(task_id) +
                                       " out of range (" +
                                       std::to_string(batch.task_list.size()) + " tasks)");
    }
    auto& task = batch.task_list[task_id];
    if (core_->handle) {
        for (Slice* slice : task.slice_list) {
            if (slice->cleanup_callback != &sunrise_link_cpp::releaseSlice) continue;
            auto* sub = static_cast<Submission*>(slice->local.cuda_stream);
            if (sub) sunrise_link_cpp::pollRequest(sub, static_cast<size_t>(slice->local.cuda_device));
        }
    }
    status.transferred_bytes = __atomic_load_n(&task.transferred_bytes, __ATOMIC_RELAXED);
    uint64_t success = __atomic_load_n(&task.success_slice_count, __ATOMIC_ACQUIRE);
    uint64_t failed = __atomic_load_n(&task.failed_slice_count, __ATOMIC_ACQUIRE);
    uint64_t slices = __atomic_load_n(&task.slice_count, __ATOMIC_ACQUIRE);
    if (success + failed == slices) {
        status.s = failed ? TransferStatusEnum::FAILED : TransferStatusEnum::COMPLETED;
        task.is_finished = true;
    } else {
        status.s = TransferStatusEnum::WAITING;
    }
    return Status::OK();
}

}  // namespace mooncake
