// The plain-C interface of libnurture_spm_shim.so, the only nurture binary that links
// SentencePiece. modules/text/tokenizer.cpp loads it apart (open_spm_shim(): RTLD_LOCAL | RTLD_DEEPBIND,
// or a link namespace of its own under AddressSanitizer) and looks these functions up by name,
// so SentencePiece's bundled protobuf never meets the libprotobuf that LibTorch loads. Nothing
// crosses this boundary as a C++ object: text goes in as (pointer, length), results come back
// through caller-supplied callbacks, and errors are copied into a caller-supplied buffer. No C++
// exception ever leaves the shim.
//
// Bump NURTURE_SPM_SHIM_ABI whenever a signature or a meaning below changes; the tokenizer
// refuses a shim that reports another version (a stale build).
#pragma once
#include <stddef.h>
#include <stdint.h>

#define NURTURE_SPM_SHIM_ABI 1

#if defined(__GNUC__)
#define NURTURE_SPM_API __attribute__((visibility("default")))
#else
#define NURTURE_SPM_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

// A loaded model (a SentencePieceProcessor inside the shim). Opaque to the caller.
typedef struct nurture_spm nurture_spm;

// Receives a run of token ids (valid only during the call).
typedef void (*nurture_spm_ids_sink)(void* ctx, const int* ids, size_t n);
// Receives a run of bytes (valid only during the call); may be called several times.
typedef void (*nurture_spm_bytes_sink)(void* ctx, const char* data, size_t n);

// What nurture_spm_piece_type() reports.
enum {
  NURTURE_SPM_PIECE_NORMAL = 0,   // ordinary or user-defined piece
  NURTURE_SPM_PIECE_UNKNOWN = 1,  // <unk>
  NURTURE_SPM_PIECE_CONTROL = 2,  // never produced by encoding; decodes to nothing
  NURTURE_SPM_PIECE_UNUSED = 3,
  NURTURE_SPM_PIECE_BYTE = 4,  // byte-fallback piece <0xNN>
};

// What nurture_spm_reserved_id() reports.
enum {
  NURTURE_SPM_UNK = 0,
  NURTURE_SPM_BOS = 1,
  NURTURE_SPM_EOS = 2,
  NURTURE_SPM_PAD = 3,
};

// NURTURE_SPM_SHIM_ABI of the shim as built.
NURTURE_SPM_API int nurture_spm_abi_version(void);

// Loads a serialized ModelProto (the bytes of a .model file). Returns NULL on failure with a
// NUL-terminated message (truncated to err_size) in `err`.
NURTURE_SPM_API nurture_spm* nurture_spm_load(const char* data, size_t size, char* err,
                                              size_t err_size);
NURTURE_SPM_API void nurture_spm_free(nurture_spm* spm);

NURTURE_SPM_API int nurture_spm_piece_count(const nurture_spm* spm);
// -1 if the model has no such piece (SentencePiece itself would answer <unk>'s id).
NURTURE_SPM_API int nurture_spm_piece_to_id(const nurture_spm* spm, const char* piece, size_t n);
// 0 on success, -1 if `id` is out of range.
NURTURE_SPM_API int nurture_spm_id_to_piece(const nurture_spm* spm, int id,
                                            nurture_spm_bytes_sink sink, void* ctx);
// One of NURTURE_SPM_PIECE_*, or -1 if `id` is out of range.
NURTURE_SPM_API int nurture_spm_piece_type(const nurture_spm* spm, int id);
// The id of NURTURE_SPM_UNK / _BOS / _EOS / _PAD, or -1 if the model has none.
NURTURE_SPM_API int nurture_spm_reserved_id(const nurture_spm* spm, int which);

// Encodes UTF-8 text; the ids arrive through one call of `sink`. 0 on success, else -1 and `err`.
// Thread-safe for one model.
NURTURE_SPM_API int nurture_spm_encode(const nurture_spm* spm, const char* text, size_t n,
                                       nurture_spm_ids_sink sink, void* ctx, char* err,
                                       size_t err_size);
// Decodes ids (control pieces decode to nothing); the text arrives through `sink`.
// 0 on success, else -1 and `err`.
NURTURE_SPM_API int nurture_spm_decode(const nurture_spm* spm, const int* ids, size_t n,
                                       nurture_spm_bytes_sink sink, void* ctx, char* err,
                                       size_t err_size);

// Trains a model. `keys`/`values` are SentencePiece trainer flags without the dashes
// ("vocab_size" = "4096", "model_type" = "bpe", ...); `inputs` are text files read line by line
// (a trailing '\r' is dropped). `seed` seeds SentencePiece's random generator, so the same
// inputs and flags give the same model. The serialized model arrives through `model_sink`;
// nothing is written to disk. 0 on success, else -1 and `err`. Not thread-safe (SentencePiece's
// trainer uses global state).
NURTURE_SPM_API int nurture_spm_train(const char* const* keys, const char* const* values,
                                      size_t n_options, const char* const* inputs, size_t n_inputs,
                                      uint32_t seed, nurture_spm_bytes_sink model_sink, void* ctx,
                                      char* err, size_t err_size);

#ifdef __cplusplus
}  // extern "C"
#endif
