//! Backing memory: every device allocation is a file in a shared-memory directory, mapped
//! read-write only at an address the emulator keeps to itself. The address handed to the caller
//! lies in a `PROT_NONE` reservation, so host code touching it faults as it would on a card.
//! IPC handles name the file; another process maps it again.

use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

/// Bytes in front of the data in each backing file.
pub const HEADER: usize = 4096;
pub const PAGE: usize = 4096;
pub const MAGIC: u64 = 0x5441_4e47_454d_5531; // "TANGEMU1"

#[repr(C)]
struct Header {
    magic: u64,
    destroyed: AtomicU32,
    device: u32,
    size: u64,
    owner_pid: u64,
}

/// One mapped backing file (the exporter's allocation or an opener's mapping of it).
pub struct Backing {
    map: *mut u8,
    map_len: usize,
    pub size: usize,
    pub path: PathBuf,
    pub owner_pid: u32,
    pub id: u64,
}

// The mapping is plain shared memory; all access goes through raw copies.
unsafe impl Send for Backing {}
unsafe impl Sync for Backing {}

pub fn round_up(n: usize, to: usize) -> usize {
    n.div_ceil(to) * to
}

pub fn pid() -> u32 {
    unsafe { libc::getpid() as u32 }
}

pub fn uid() -> u32 {
    unsafe { libc::getuid() }
}

pub fn shm_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        if let Ok(d) = std::env::var("TANG_EMU_SHM_DIR") {
            if !d.is_empty() {
                return PathBuf::from(d);
            }
        }
        let shm = PathBuf::from("/dev/shm");
        let c = CString::new("/dev/shm").unwrap_or_default();
        if unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) } == 0 {
            shm
        } else {
            std::env::temp_dir()
        }
    })
}

pub fn file_path(owner_pid: u32, id: u64) -> PathBuf {
    shm_dir().join(format!("tang-emu.{}.{}.{}", uid(), owner_pid, id))
}

/// Removes backing files left behind by dead processes of this user.
pub fn cleanup_stale() {
    let Ok(rd) = std::fs::read_dir(shm_dir()) else {
        return;
    };
    let prefix = format!("tang-emu.{}.", uid());
    let me = pid();
    for entry in rd.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(rest) = name.strip_prefix(&prefix) else {
            continue;
        };
        let Some(pid_s) = rest.split('.').next() else {
            continue;
        };
        let Ok(p) = pid_s.parse::<i32>() else {
            continue;
        };
        if p as u32 == me || p <= 0 {
            continue;
        }
        let alive = unsafe { libc::kill(p, 0) } == 0
            || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH);
        if !alive {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

fn map_fd(fd: i32, len: usize) -> Result<*mut u8, ()> {
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        Err(())
    } else {
        Ok(p.cast())
    }
}

impl Backing {
    /// Creates the backing file of a new allocation (mode 0600).
    pub fn create(id: u64, device: u32, size: usize) -> Result<Backing, ()> {
        // Files are sparse; refuse what the file system could never hold (writing past its
        // free space later would raise SIGBUS instead of an out-of-memory error).
        if let Ok(dir) = CString::new(shm_dir().as_os_str().as_encoded_bytes()) {
            let mut vfs: libc::statvfs = unsafe { std::mem::zeroed() };
            if unsafe { libc::statvfs(dir.as_ptr(), &mut vfs) } == 0 {
                let avail = (vfs.f_bavail as u128) * (vfs.f_frsize as u128);
                if (size as u128) > avail {
                    return Err(());
                }
            }
        }
        let path = file_path(pid(), id);
        let c = CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| ())?;
        let fd = unsafe {
            libc::open(
                c.as_ptr(),
                libc::O_RDWR | libc::O_CREAT | libc::O_EXCL | libc::O_CLOEXEC,
                0o600,
            )
        };
        if fd < 0 {
            return Err(());
        }
        let map_len = HEADER + round_up(size.max(1), PAGE);
        let ok = unsafe { libc::ftruncate(fd, map_len as libc::off_t) } == 0;
        let map = if ok { map_fd(fd, map_len) } else { Err(()) };
        unsafe { libc::close(fd) };
        let Ok(map) = map else {
            let _ = std::fs::remove_file(&path);
            return Err(());
        };
        unsafe {
            map.cast::<Header>().write(Header {
                magic: MAGIC,
                destroyed: AtomicU32::new(0),
                device,
                size: size as u64,
                owner_pid: pid() as u64,
            });
        }
        Ok(Backing {
            map,
            map_len,
            size,
            path,
            owner_pid: pid(),
            id,
        })
    }

    /// Maps an existing allocation named by an IPC handle. `Err(true)` = it no longer exists.
    pub fn open(owner_pid: u32, id: u64, size: usize) -> Result<Backing, bool> {
        let path = file_path(owner_pid, id);
        let c = CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| false)?;
        let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
        if fd < 0 {
            return Err(true);
        }
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        let map_len = HEADER + round_up(size.max(1), PAGE);
        if unsafe { libc::fstat(fd, &mut st) } != 0 || (st.st_size as usize) < map_len {
            unsafe { libc::close(fd) };
            return Err(false);
        }
        let map = map_fd(fd, map_len);
        unsafe { libc::close(fd) };
        let map = map.map_err(|_| false)?;
        let b = Backing {
            map,
            map_len,
            size,
            path,
            owner_pid,
            id,
        };
        let h = b.header();
        if h.magic != MAGIC || h.size as usize != size {
            return Err(false);
        }
        if b.destroyed() {
            return Err(true);
        }
        Ok(b)
    }

    fn header(&self) -> &Header {
        unsafe { &*self.map.cast::<Header>() }
    }

    /// The emulator's read-write view of the data.
    pub fn view(&self) -> *mut u8 {
        unsafe { self.map.add(HEADER) }
    }

    pub fn destroyed(&self) -> bool {
        self.header().destroyed.load(Ordering::Acquire) != 0
    }

    /// The exporter frees the allocation: openers elsewhere see it destroyed; the name goes.
    pub fn destroy(&self) {
        self.header().destroyed.store(1, Ordering::Release);
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Drop for Backing {
    fn drop(&mut self) {
        unsafe { libc::munmap(self.map.cast(), self.map_len) };
    }
}

/// A `PROT_NONE` address range no host code may touch.
pub fn reserve(len: usize) -> Option<usize> {
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        None
    } else {
        Some(p as usize)
    }
}

/// Pinned host memory (page-aligned anonymous mapping).
pub fn host_map(len: usize) -> Option<*mut u8> {
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            round_up(len, PAGE),
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        None
    } else {
        Some(p.cast())
    }
}

pub fn host_unmap(p: *mut u8, len: usize) {
    unsafe { libc::munmap(p.cast(), round_up(len, PAGE)) };
}

/// First-fit allocator of offsets inside a reservation.
pub struct VaSpace {
    free: std::collections::BTreeMap<usize, usize>,
}

impl VaSpace {
    pub fn new(len: usize) -> Self {
        let mut free = std::collections::BTreeMap::new();
        if len > 0 {
            free.insert(0, len);
        }
        VaSpace { free }
    }

    pub fn alloc(&mut self, len: usize) -> Option<usize> {
        let (&off, &flen) = self.free.iter().find(|(_, &l)| l >= len)?;
        self.free.remove(&off);
        if flen > len {
            self.free.insert(off + len, flen - len);
        }
        Some(off)
    }

    pub fn release(&mut self, off: usize, len: usize) {
        let mut start = off;
        let mut l = len;
        if let Some((&po, &pl)) = self.free.range(..off).next_back() {
            if po + pl == off {
                self.free.remove(&po);
                start = po;
                l += pl;
            }
        }
        if let Some(&nl) = self.free.get(&(off + len)) {
            self.free.remove(&(off + len));
            l += nl;
        }
        self.free.insert(start, l);
    }
}
