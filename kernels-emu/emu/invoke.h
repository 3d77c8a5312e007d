// A kernel's parameter list unpacked from the 64-bit slots the Rust side
// passes ('p' marks a pointer and 'u' a 32-bit value, as it declares them):
// shared by the built-in units' launcher (emu.cpp) and the prelude of
// kernels compiled at run time (module.h).
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <utility>

template <class T>
T emu_arg_as(uint64_t v) {
    if constexpr (std::is_pointer_v<T>)
        return reinterpret_cast<T>(static_cast<uintptr_t>(v));
    else
        return static_cast<T>(v);
}

template <auto F>
struct Invoke;

template <class... A, void (*F)(A...)>
struct Invoke<F> {
    static constexpr size_t arity = sizeof...(A);
    // Whether `kinds` (NUL-terminated) spells this parameter list.
    static bool kinds_match(const char* kinds) {
        const char want[] = {(std::is_pointer_v<A> ? 'p' : 'u')..., 0};
        return std::strcmp(want, kinds) == 0;
    }
    static void call(const uint64_t* a) { call_with(a, std::index_sequence_for<A...>{}); }
    template <size_t... I>
    static void call_with(const uint64_t* a, std::index_sequence<I...>) {
        F(emu_arg_as<A>(a[I])...);
    }
};
