// The codecs: the only list of them. A new codec is a file beside this one defining its
// CodecInfo, declared and listed here.
#include "comm/codec.h"

namespace ft {

CodecInfo none_codec();
CodecInfo fp16_codec();
CodecInfo bf16_codec();
CodecInfo int8_codec();
CodecInfo int4_codec();
CodecInfo fp8_codec();
CodecInfo topk_codec();
CodecInfo sign_codec();
CodecInfo sparseloco_codec();
CodecInfo demo_codec();
CodecInfo powersgd_codec();

const std::vector<CodecInfo>& codec_registry() {
  static const std::vector<CodecInfo> all = {none_codec(), fp16_codec(), bf16_codec(),      int8_codec(),
                                             int4_codec(), fp8_codec(),  topk_codec(),      sign_codec(),
                                             sparseloco_codec(), demo_codec(),     powersgd_codec()};
  return all;
}

}  // namespace ft
