#include "tests/cuda_emulator/fiber.h"

#include <sys/mman.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>

#if defined(__SANITIZE_ADDRESS__)
#define MOE_EMU_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define MOE_EMU_ASAN 1
#endif
#endif
#ifdef MOE_EMU_ASAN
// AddressSanitizer must be told when the stack changes, or it reports the fiber's frames as wild.
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

#if defined(__x86_64__)
// Saves the callee-saved registers on the current stack, stores the stack pointer in *save_sp, and
// continues on next_sp (which holds the same layout, or a fresh fiber's first frame).
extern "C" void moe_emu_switch(void** save_sp, void* next_sp);
asm(R"(
  .text
  .globl moe_emu_switch
  .hidden moe_emu_switch
  .type moe_emu_switch, @function
moe_emu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size moe_emu_switch, .-moe_emu_switch
)");
#else
#include <ucontext.h>
#endif

namespace moe_emu {
namespace {
// The fiber that entry() starts (set by resume just before the first switch into it).
thread_local Fiber* t_starting = nullptr;
constexpr size_t kGuardBytes = 4096;
}  // namespace

struct Fiber::Impl {
  void* mapping = nullptr;
  size_t mapping_bytes = 0;
  char* stack_lo = nullptr;  // usable stack, above the guard page
  size_t stack_bytes = 0;
#if defined(__x86_64__)
  void* sp = nullptr;         // the fiber's saved stack pointer
  void* caller_sp = nullptr;  // the scheduler's, while the fiber runs
#else
  ucontext_t ctx{}, caller{};
#endif
#ifdef MOE_EMU_ASAN
  void* scheduler_fake = nullptr;
  void* fiber_fake = nullptr;
  const void* caller_bottom = nullptr;
  size_t caller_size = 0;
#endif
};

Fiber::Fiber(size_t stack_bytes) : impl_(std::make_unique<Impl>()) {
  impl_->mapping_bytes = stack_bytes + kGuardBytes;
  impl_->mapping = mmap(nullptr, impl_->mapping_bytes, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
  if (impl_->mapping == MAP_FAILED) {
    std::fprintf(stderr, "CUDA emulator: cannot map a %zu-byte fiber stack\n", stack_bytes);
    std::abort();
  }
  mprotect(impl_->mapping, kGuardBytes, PROT_NONE);  // an overflow faults instead of corrupting
  impl_->stack_lo = static_cast<char*>(impl_->mapping) + kGuardBytes;
  impl_->stack_bytes = stack_bytes;
}

Fiber::~Fiber() { munmap(impl_->mapping, impl_->mapping_bytes); }

void Fiber::reset(const std::function<void()>* body) {
  body_ = body;
  finished_ = false;
#ifdef MOE_EMU_ASAN
  __asan_unpoison_memory_region(impl_->stack_lo, impl_->stack_bytes);
#endif
#if defined(__x86_64__)
  // First frame: six zeroed callee-saved registers, then entry() as the return address of the switch,
  // then a null return address for entry() itself; entry() starts with rsp ≡ 8 (mod 16), as after a call.
  auto top = reinterpret_cast<uintptr_t>(impl_->stack_lo + impl_->stack_bytes) & ~uintptr_t(15);
  void** s = reinterpret_cast<void**>(top);
  *--s = nullptr;
  *--s = reinterpret_cast<void*>(&Fiber::entry);
  for (int i = 0; i < 6; ++i) *--s = nullptr;
  impl_->sp = s;
#else
  getcontext(&impl_->ctx);
  impl_->ctx.uc_stack.ss_sp = impl_->stack_lo;
  impl_->ctx.uc_stack.ss_size = impl_->stack_bytes;
  impl_->ctx.uc_link = nullptr;
  makecontext(&impl_->ctx, &Fiber::entry, 0);
#endif
}

void Fiber::resume() {
  t_starting = this;
#ifdef MOE_EMU_ASAN
  __sanitizer_start_switch_fiber(&impl_->scheduler_fake, impl_->stack_lo, impl_->stack_bytes);
#endif
#if defined(__x86_64__)
  moe_emu_switch(&impl_->caller_sp, impl_->sp);
#else
  swapcontext(&impl_->caller, &impl_->ctx);
#endif
#ifdef MOE_EMU_ASAN
  __sanitizer_finish_switch_fiber(impl_->scheduler_fake, nullptr, nullptr);
#endif
}

void Fiber::yield() {
#ifdef MOE_EMU_ASAN
  __sanitizer_start_switch_fiber(finished_ ? nullptr : &impl_->fiber_fake, impl_->caller_bottom, impl_->caller_size);
#endif
#if defined(__x86_64__)
  moe_emu_switch(&impl_->sp, impl_->caller_sp);
#else
  swapcontext(&impl_->ctx, &impl_->caller);
#endif
#ifdef MOE_EMU_ASAN
  __sanitizer_finish_switch_fiber(impl_->fiber_fake, &impl_->caller_bottom, &impl_->caller_size);
#endif
}

void Fiber::entry() {
  Fiber* self = t_starting;
#ifdef MOE_EMU_ASAN
  __sanitizer_finish_switch_fiber(nullptr, &self->impl_->caller_bottom, &self->impl_->caller_size);
#endif
  try {
    (*self->body_)();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "CUDA emulator: a kernel thread threw: %s\n", e.what());
    std::abort();
  } catch (...) {
    std::fprintf(stderr, "CUDA emulator: a kernel thread threw\n");
    std::abort();
  }
  self->finished_ = true;
  self->yield();  // never resumed again
  std::abort();
}

}  // namespace moe_emu
