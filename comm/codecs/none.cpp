// none: fp32 on the wire, 4n bytes, the dense ring.
#include "comm/codec.h"

namespace ft {

CodecInfo none_codec() {
  return {"none", "fp32, uncompressed", {}, true, "the ring, on the buffers' device", make_element_codec<fp32_wire>};
}

}  // namespace ft
