//! Placeholder: being built (see the open issues).
#![no_std]
