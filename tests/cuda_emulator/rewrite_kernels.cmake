# Turns a .cu file into C++ the host compiler takes, for the CUDA emulator build:
#   cmake -DIN=<kernels.cu> -DOUT=<kernels.cpp> -P rewrite_kernels.cmake
# Only two pieces of CUDA syntax are not C++; everything else is mapped by kernel_prelude.h.
file(READ "${IN}" text)
# kernel<<<config>>>()  →  ::moe_emu::launch("kernel", ::moe_emu::LaunchConfig(config), kernel)
string(REGEX REPLACE "([A-Za-z_][A-Za-z0-9_]*(<[^;<>()]*>)?)<<<([^;]*)>>>\\(\\)"
       "::moe_emu::launch(\"\\1\", ::moe_emu::LaunchConfig(\\3), \\1)" text "${text}")
# kernel<<<config>>>(args)  →  ::moe_emu::launch("kernel", ::moe_emu::LaunchConfig(config), kernel, args)
string(REGEX REPLACE "([A-Za-z_][A-Za-z0-9_]*(<[^;<>()]*>)?)<<<([^;]*)>>>\\("
       "::moe_emu::launch(\"\\1\", ::moe_emu::LaunchConfig(\\3), \\1, " text "${text}")
# extern __shared__ [__align__(n)] T name[];  →  T* name = reinterpret_cast<T*>(::moe_emu::dynamic_shared());
string(REGEX REPLACE "extern __shared__ (__align__\\([0-9]+\\) )?([A-Za-z_][A-Za-z0-9_ ]*[A-Za-z0-9_]) ([A-Za-z_][A-Za-z0-9_]*)\\[\\];"
       "\\2* \\3 = reinterpret_cast<\\2*>(::moe_emu::dynamic_shared());" text "${text}")
if(text MATCHES "<<<|extern __shared__")
  message(FATAL_ERROR "${IN}: a launch or extern __shared__ declaration the emulator rewrite does not recognise")
endif()
# The #line keeps compiler messages and assertions pointing at the original file and line.
file(WRITE "${OUT}.tmp" "// Generated from ${IN} for the CUDA emulator (tests/cuda_emulator/rewrite_kernels.cmake).\n#include \"tests/cuda_emulator/kernel_prelude.h\"\n#line 1 \"${IN}\"\n${text}")
file(COPY_FILE "${OUT}.tmp" "${OUT}" ONLY_IF_DIFFERENT)
file(REMOVE "${OUT}.tmp")
