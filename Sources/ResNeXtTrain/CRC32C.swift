/// CRC-32C (Castagnoli), bitwise-table implementation: TensorBoard's records and the
/// checksums of checkpoint tensors.
public func crc32c(_ bytes: [UInt8]) -> UInt32 { bytes.withUnsafeBytes { crc32c($0) } }

public func crc32c(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
    var crc: UInt32 = 0xFFFF_FFFF
    crc32cTable.withUnsafeBufferPointer { table in
        for b in bytes {
            crc = table[Int((crc ^ UInt32(b)) & 0xFF)] ^ (crc >> 8)
        }
    }
    return crc ^ 0xFFFF_FFFF
}

/// TFRecord's masked CRC: rotate right by 15 and add a constant.
public func maskedCRC32C(_ bytes: [UInt8]) -> UInt32 {
    let crc = crc32c(bytes)
    return ((crc >> 15) | (crc << 17)) &+ 0xA282_EAD8
}

private let crc32cTable: [UInt32] = (0..<256).map { i -> UInt32 in
    var c = UInt32(i)
    for _ in 0..<8 { c = (c & 1) != 0 ? (c >> 1) ^ 0x82F6_3B78 : c >> 1 }
    return c
}
