# How nurture finds its external libraries, and the SentencePiece isolation shim.
# No other project's source lives here.
#
# NURTURE_DEPS_PREFIX: extra prefixes (a list) where Debian packages were unpacked with `dpkg -x`
# (e.g. /opt/deps/usr on an air-gapped GPU node). Searched before the system.

set(NURTURE_DEPS_PREFIX "" CACHE STRING "Prefixes holding unpacked dependencies (yaml-cpp, boost, sentencepiece, ...)")
set(_nurture_hints)
foreach(p IN LISTS NURTURE_DEPS_PREFIX)
  list(APPEND CMAKE_PREFIX_PATH ${p} ${p}/lib/x86_64-linux-gnu/cmake ${p}/share/cmake)
  list(APPEND _nurture_hints ${p})
endforeach()


# ---- LibTorch (Debian's 1.13, or any 2.x through CMAKE_PREFIX_PATH / Torch_DIR) ----------------
find_package(Torch REQUIRED)
message(STATUS "nurture: LibTorch ${Torch_VERSION} from ${Torch_DIR}")
# Every C++ library nurture links (Debian's yaml-cpp, Boost, ...) uses the C++11 string ABI; pip's
# LibTorch wheels before 2.7 (most of them) used the old one, and nothing would link.
if(TORCH_CXX_FLAGS MATCHES "_GLIBCXX_USE_CXX11_ABI=0")
  message(FATAL_ERROR "nurture: the LibTorch in ${Torch_DIR} is built with the old C++ string ABI "
                      "(-D_GLIBCXX_USE_CXX11_ABI=0), which the system's C++ libraries cannot link with. "
                      "Use LibTorch >= 2.7 from pip, or the cxx11-abi archive from pytorch.org.")
endif()
# LibTorch 2.14 and later require C++20 of the programs that include it.
if(Torch_VERSION VERSION_GREATER_EQUAL 2.14)
  set(CMAKE_CXX_STANDARD 20)
endif()
add_library(nurture_torch INTERFACE)
target_link_libraries(nurture_torch INTERFACE ${TORCH_LIBRARIES})
target_include_directories(nurture_torch INTERFACE ${TORCH_INCLUDE_DIRS})
# Distributed (c10d) headers in Debian's package include gloo's.
find_path(NURTURE_GLOO_INCLUDE gloo/config.h HINTS ${_nurture_hints} PATH_SUFFIXES include)
if(NURTURE_GLOO_INCLUDE)
  target_include_directories(nurture_torch INTERFACE ${NURTURE_GLOO_INCLUDE})
endif()
# NCCL (data parallel on CUDA): with a CUDA LibTorch whose nccl.h is found (pip's wheels keep it
# in site-packages/nvidia/nccl/include: pass -DNCCL_INCLUDE_DIR=... if it is elsewhere). Without
# it, more than one rank on CUDA is refused with a message (nothing falls back silently).
if(TARGET torch_cuda OR TORCH_CUDA_LIBRARIES)
  # The nccl.h of the NCCL the wheel was built with (its Options struct changes with it): beside
  # the torch package in site-packages (Torch_DIR = site-packages/torch/share/cmake/Torch).
  get_filename_component(_nurture_site_packages "${Torch_DIR}/../../../.." ABSOLUTE)
  find_path(NCCL_INCLUDE_DIR nccl.h HINTS ${NCCL_INCLUDE_DIR} ${_nurture_site_packages}/nvidia/nccl/include
            ${_nurture_hints} PATH_SUFFIXES include)
  if(NCCL_INCLUDE_DIR)
    message(STATUS "nurture: NCCL from ${NCCL_INCLUDE_DIR} (data parallel on CUDA)")
    target_include_directories(nurture_torch INTERFACE ${NCCL_INCLUDE_DIR})
    set(NURTURE_WITH_NCCL ON)
  else()
    message(WARNING "nurture: CUDA LibTorch but no nccl.h: multi-rank CUDA runs are refused (set NCCL_INCLUDE_DIR)")
  endif()
endif()

# ---- yaml-cpp (recipes) --------------------------------------------------------------------------
find_path(NURTURE_YAML_INCLUDE yaml-cpp/yaml.h HINTS ${_nurture_hints} PATH_SUFFIXES include REQUIRED)
find_library(NURTURE_YAML_LIB NAMES yaml-cpp HINTS ${_nurture_hints}
             PATH_SUFFIXES lib lib/x86_64-linux-gnu REQUIRED)
add_library(nurture_yaml INTERFACE)
target_include_directories(nurture_yaml INTERFACE ${NURTURE_YAML_INCLUDE})
target_link_libraries(nurture_yaml INTERFACE ${NURTURE_YAML_LIB})

# ---- Boost.Program_options (CLI) -----------------------------------------------------------------
find_path(NURTURE_BOOST_INCLUDE boost/program_options.hpp HINTS ${_nurture_hints}
          PATH_SUFFIXES include REQUIRED)
find_library(NURTURE_BOOST_PO_LIB NAMES boost_program_options HINTS ${_nurture_hints}
             PATH_SUFFIXES lib lib/x86_64-linux-gnu REQUIRED)
add_library(nurture_program_options INTERFACE)
target_include_directories(nurture_program_options INTERFACE ${NURTURE_BOOST_INCLUDE})
target_link_libraries(nurture_program_options INTERFACE ${NURTURE_BOOST_PO_LIB})

# ---- nlohmann-json (header only: configs, metrics.jsonl, data files) ----------------------------
find_path(NURTURE_JSON_INCLUDE nlohmann/json.hpp HINTS ${_nurture_hints} PATH_SUFFIXES include REQUIRED)
add_library(nurture_json INTERFACE)
target_include_directories(nurture_json INTERFACE ${NURTURE_JSON_INCLUDE})

# ---- PCRE2 (the pre-tokenizer regexes of Hugging Face's tokenizer.json, \p{L} and \p{N} classes) ----
find_path(NURTURE_PCRE2_INCLUDE pcre2.h HINTS ${_nurture_hints} PATH_SUFFIXES include REQUIRED)
find_library(NURTURE_PCRE2_LIB NAMES pcre2-8 HINTS ${_nurture_hints}
             PATH_SUFFIXES lib lib/x86_64-linux-gnu REQUIRED)
add_library(nurture_pcre2 INTERFACE)
target_include_directories(nurture_pcre2 INTERFACE ${NURTURE_PCRE2_INCLUDE})
target_link_libraries(nurture_pcre2 INTERFACE ${NURTURE_PCRE2_LIB})

# ---- OpenSSL's libcrypto (SHA-256 of checkpoint files, pipelines/train/manifest.cpp) ------------------
if(NURTURE_DEPS_PREFIX AND NOT OPENSSL_ROOT_DIR)
  list(GET NURTURE_DEPS_PREFIX 0 OPENSSL_ROOT_DIR)
endif()
find_package(OpenSSL REQUIRED COMPONENTS Crypto)

# ---- SentencePiece, isolated ---------------------------------------------------------------------
# Debian's libsentencepiece.so exports its bundled protobuf symbols, which clash with the
# libprotobuf that libtorch loads. Nothing that links libtorch may link sentencepiece: the
# tokenizer (modules/text/tokenizer.cpp) dlopen()s this shim with RTLD_LOCAL|RTLD_DEEPBIND, and the
# shim alone links sentencepiece. Its interface is plain C (sentencepiece_shim/spm_shim.h).
find_path(NURTURE_SPM_INCLUDE sentencepiece_processor.h HINTS ${_nurture_hints}
          PATH_SUFFIXES include REQUIRED)
find_library(NURTURE_SPM_LIB NAMES sentencepiece HINTS ${_nurture_hints}
             PATH_SUFFIXES lib lib/x86_64-linux-gnu REQUIRED)
find_library(NURTURE_SPM_TRAIN_LIB NAMES sentencepiece_train HINTS ${_nurture_hints}
             PATH_SUFFIXES lib lib/x86_64-linux-gnu REQUIRED)
add_library(nurture_spm_shim MODULE ${CMAKE_CURRENT_LIST_DIR}/sentencepiece_shim/spm_shim.cpp)
target_include_directories(nurture_spm_shim PRIVATE ${NURTURE_SPM_INCLUDE} ${CMAKE_SOURCE_DIR})
target_link_libraries(nurture_spm_shim PRIVATE ${NURTURE_SPM_TRAIN_LIB} ${NURTURE_SPM_LIB})
set_target_properties(nurture_spm_shim PROPERTIES PREFIX "lib" CXX_VISIBILITY_PRESET hidden)

# ---- GoogleTest ------------------------------------------------------------------------------------
if(NURTURE_BUILD_TESTS)
  find_package(GTest REQUIRED)
endif()
