//! Emulated Tang runtime (`libtangrt_shared.so`) and PTML (`libptml_shared.so`).
