//! Layer tar unpack/pack.
