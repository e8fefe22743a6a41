// bf16: bfloat16 on the wire (wire.h), round to nearest even. Linear: the ring sums on the
// 16-bit wire, at any level of the hierarchy.
#include "comm/codec.h"

namespace ft {

CodecInfo bf16_codec() {
  return {"bf16", "bfloat16, 2 bytes per element", {}, true,
          "rounding with error feedback on the host; the wire conversion on the buffers' device",
          make_element_codec<bf16_wire>};
}

}  // namespace ft
