import Foundation

/// Element types used in our files.
public enum SafeTensorsDType: String, Sendable {
    case f32 = "F32", f64 = "F64", i64 = "I64", u8 = "U8"
    public var size: Int {
        switch self {
        case .f32: 4;
        case .f64: 8;
        case .i64: 8;
        case .u8: 1
        }
    }
}

/// One tensor to write: name, dtype, shape and its little-endian bytes.
public struct SafeTensor {
    public var name: String
    public var dtype: SafeTensorsDType
    public var shape: [Int]
    public var bytes: [UInt8]

    public init(name: String, dtype: SafeTensorsDType, shape: [Int], bytes: [UInt8]) {
        self.name = name; self.dtype = dtype; self.shape = shape; self.bytes = bytes
    }

    /// Float or Double values, stored as F32 or F64 (little-endian machines only).
    public init<T: EngineScalar>(name: String, shape: [Int], values: UnsafeBufferPointer<T>) {
        self.init(name: name, dtype: T.dtype, shape: shape, bytes: Array(UnsafeRawBufferPointer(values)))
    }

    public init(name: String, shape: [Int], int64s: [Int64]) {
        self.init(name: name, dtype: .i64, shape: shape, bytes: int64s.withUnsafeBytes { Array($0) })
    }
}

/// A safetensors file (https://huggingface.co/docs/safetensors): an 8-byte little-endian header
/// length, a JSON header {name: {dtype, shape, data_offsets}, "__metadata__": {str: str}}, then the
/// data. Reading checks the whole layout and reports problems by file, tensor and byte offset.
public struct SafeTensorsFile {
    public struct Info: Sendable {
        public let dtype: SafeTensorsDType
        public let shape: [Int]
        /// Byte range in `data` (relative to the start of the data section).
        public let begin: Int, end: Int
        public var count: Int { shape.reduce(1, *) }
    }

    public let path: String
    public let metadata: [String: String]
    public let tensors: [String: Info]
    /// The names in file order (by data offset).
    public let names: [String]
    let data: Data
    let dataStart: Int

    public init(path: String) throws {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ResNeXtError("\(path): cannot read the file (missing or unreadable)")
        }
        try self.init(data: data, path: path)
    }

    public init(data: Data, path: String = "<memory>") throws {
        self.path = path
        self.data = data
        guard data.count >= 8 else {
            throw ResNeXtError("\(path): \(data.count) bytes is too short for a safetensors file (8-byte header length missing)")
        }
        var headerLength: UInt64 = 0
        for i in 0..<8 { headerLength |= UInt64(data[data.startIndex + i]) << (8 * UInt64(i)) }
        guard headerLength <= UInt64(data.count - 8) else {
            throw ResNeXtError(
                "\(path): header of \(headerLength) bytes runs past the end of the file (\(data.count) bytes): the file is truncated or not safetensors"
            )
        }
        dataStart = 8 + Int(headerLength)
        let headerData = data.subdata(in: (data.startIndex + 8)..<(data.startIndex + dataStart))
        guard let object = try? JSONSerialization.jsonObject(with: headerData), let header = object as? [String: Any] else {
            throw ResNeXtError("\(path): the JSON header at byte 8 does not parse")
        }
        var metadata: [String: String] = [:]
        var tensors: [String: Info] = [:]
        let dataLength = data.count - dataStart
        var parsed: [(String, Info)] = []
        for (name, value) in header {
            if name == "__metadata__" {
                guard let m = value as? [String: String] else {
                    throw ResNeXtError("\(path): __metadata__ must map strings to strings")
                }
                metadata = m
                continue
            }
            guard let entry = value as? [String: Any], let dt = entry["dtype"] as? String,
                let shape = entry["shape"] as? [Int], let offsets = entry["data_offsets"] as? [Int], offsets.count == 2
            else { throw ResNeXtError("\(path): tensor '\(name)' has a malformed header entry") }
            guard let dtype = SafeTensorsDType(rawValue: dt) else {
                throw ResNeXtError("\(path): tensor '\(name)' has unsupported dtype \(dt) (F32, F64, I64, U8 are read)")
            }
            parsed.append((name, Info(dtype: dtype, shape: shape, begin: offsets[0], end: offsets[1])))
        }
        // checked in file order, so that the first damaged tensor is the one named
        parsed.sort { ($0.1.begin, $0.0) < ($1.1.begin, $1.0) }
        for (name, info) in parsed {
            guard info.begin >= 0, info.end >= info.begin, info.shape.allSatisfy({ $0 >= 0 }) else {
                throw ResNeXtError("\(path): tensor '\(name)' has invalid offsets [\(info.begin), \(info.end)]")
            }
            guard info.end <= dataLength else {
                throw ResNeXtError(
                    "\(path): tensor '\(name)' ends at byte \(dataStart + info.end) but the file has \(data.count) bytes: the file is truncated")
            }
            guard info.end - info.begin == info.count * info.dtype.size else {
                throw ResNeXtError(
                    "\(path): tensor '\(name)' holds \(info.end - info.begin) bytes, but \(info.dtype.rawValue) \(info.shape) needs \(info.count * info.dtype.size)"
                )
            }
            tensors[name] = info
        }
        self.metadata = metadata
        self.tensors = tensors
        self.names = parsed.map(\.0)
    }

    /// The bytes of a tensor as stored, and where they sit in the file.
    public func withBytes<R>(of name: String, _ body: (UnsafeRawBufferPointer, Range<Int>) throws -> R) throws -> R {
        let info = try info(name)
        return try data.withUnsafeBytes { raw in
            try body(
                UnsafeRawBufferPointer(rebasing: raw[(dataStart + info.begin)..<(dataStart + info.end)]),
                (dataStart + info.begin)..<(dataStart + info.end))
        }
    }

    public func info(_ name: String) throws -> Info {
        guard let info = tensors[name] else { throw ResNeXtError("\(path): tensor '\(name)' is missing") }
        return info
    }

    /// A tensor's values as Float (F32 as is, F64 and I64 converted).
    public func floats(_ name: String) throws -> [Float] {
        let info = try info(name)
        return data.withUnsafeBytes { raw in
            let p = raw.baseAddress! + dataStart + info.begin
            switch info.dtype {
            case .f32: return (0..<info.count).map { Float(bitPattern: p.loadUnaligned(fromByteOffset: 4 * $0, as: UInt32.self).littleEndian) }
            case .f64:
                return (0..<info.count).map { Float(Double(bitPattern: p.loadUnaligned(fromByteOffset: 8 * $0, as: UInt64.self).littleEndian)) }
            case .i64: return (0..<info.count).map { Float(Int64(littleEndian: p.loadUnaligned(fromByteOffset: 8 * $0, as: Int64.self))) }
            case .u8: return (0..<info.count).map { Float(p.load(fromByteOffset: $0, as: UInt8.self)) }
            }
        }
    }

    /// A tensor's values as Double (F64 as is, F32 widened exactly).
    public func doubles(_ name: String) throws -> [Double] {
        let info = try info(name)
        if info.dtype != .f64 { return try floats(name).map(Double.init) }
        return data.withUnsafeBytes { raw in
            let p = raw.baseAddress! + dataStart + info.begin
            return (0..<info.count).map { Double(bitPattern: p.loadUnaligned(fromByteOffset: 8 * $0, as: UInt64.self).littleEndian) }
        }
    }

    /// A tensor's values in an engine's element type.
    public func values<T: EngineScalar>(_ name: String) throws -> [T] {
        if T.self == Double.self { return try doubles(name) as! [T] }
        return try floats(name).map { T($0) }
    }

    /// An integer tensor's values (I64 or U8).
    public func int64s(_ name: String) throws -> [Int64] {
        let info = try info(name)
        return try data.withUnsafeBytes { raw in
            let p = raw.baseAddress! + dataStart + info.begin
            switch info.dtype {
            case .i64: return (0..<info.count).map { Int64(littleEndian: p.loadUnaligned(fromByteOffset: 8 * $0, as: Int64.self)) }
            case .u8: return (0..<info.count).map { Int64(p.load(fromByteOffset: $0, as: UInt8.self)) }
            default: throw ResNeXtError("\(path): tensor '\(name)' is \(info.dtype.rawValue), an integer tensor was expected")
            }
        }
    }

    /// The raw bytes of a tensor.
    public func bytes(_ name: String) throws -> [UInt8] {
        let info = try info(name)
        let start = data.startIndex + dataStart
        return [UInt8](data[(start + info.begin)..<(start + info.end)])
    }

    /// Serialises tensors (in the given order) and string metadata to safetensors bytes. The
    /// header is padded with spaces to a multiple of 8 bytes, as the reference implementation does.
    public static func encode(_ tensors: [SafeTensor], metadata: [String: String] = [:]) -> [UInt8] {
        var header = "{"
        var parts: [String] = []
        if !metadata.isEmpty {
            let items = metadata.keys.sorted().map { "\(jsonString($0)):\(jsonString(metadata[$0]!))" }
            parts.append("\"__metadata__\":{\(items.joined(separator: ","))}")
        }
        var offset = 0
        for t in tensors {
            precondition(t.bytes.count == t.shape.reduce(1, *) * t.dtype.size, "\(t.name): byte count does not match shape")
            let shape = t.shape.map(String.init).joined(separator: ",")
            parts.append(
                "\(jsonString(t.name)):{\"dtype\":\"\(t.dtype.rawValue)\",\"shape\":[\(shape)],\"data_offsets\":[\(offset),\(offset + t.bytes.count)]}"
            )
            offset += t.bytes.count
        }
        header += parts.joined(separator: ",") + "}"
        var headerBytes = Array(header.utf8)
        while headerBytes.count % 8 != 0 { headerBytes.append(0x20) }
        var out: [UInt8] = []
        out.reserveCapacity(8 + headerBytes.count + offset)
        var n = UInt64(headerBytes.count).littleEndian
        withUnsafeBytes(of: &n) { out.append(contentsOf: $0) }
        out.append(contentsOf: headerBytes)
        for t in tensors { out.append(contentsOf: t.bytes) }
        return out
    }

    /// Writes a safetensors file atomically (temporary file, fsync, rename).
    public static func write(_ tensors: [SafeTensor], metadata: [String: String] = [:], to path: String) throws {
        try writeAtomically(encode(tensors, metadata: metadata), to: path)
    }
}

func jsonString(_ s: String) -> String {
    var out = "\""
    for u in s.unicodeScalars {
        switch u {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        default:
            if u.value < 0x20 { out += String(format: "\\u%04x", u.value) } else { out.unicodeScalars.append(u) }
        }
    }
    return out + "\""
}

/// Writes bytes so that `path` holds either its old content or all of the new, never a part:
/// a temporary file in the same folder, fsync, rename over the target, fsync of the folder.
public func writeAtomically(_ bytes: [UInt8], to path: String) throws {
    let url = URL(fileURLWithPath: path)
    let dir = url.deletingLastPathComponent().path
    let tmp = dir + "/." + url.lastPathComponent + ".tmp-\(getpid())"
    let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    guard fd >= 0 else { throw ResNeXtError("\(path): cannot create \(tmp): \(String(cString: strerror(errno)))") }
    var written = 0
    let ok: Bool = bytes.withUnsafeBytes { raw in
        while written < raw.count {
            let r = Foundation.write(fd, raw.baseAddress! + written, raw.count - written)
            if r < 0 { if errno == EINTR { continue }; return false }
            written += r
        }
        return fsync(fd) == 0
    }
    let err = errno
    close(fd)
    guard ok else {
        unlink(tmp)
        throw ResNeXtError(
            "\(path): writing failed after \(written) of \(bytes.count) bytes: \(String(cString: strerror(err))); the previous file, if any, is untouched"
        )
    }
    guard rename(tmp, path) == 0 else {
        let e = errno
        unlink(tmp)
        throw ResNeXtError("\(path): cannot rename the temporary file into place: \(String(cString: strerror(e)))")
    }
    let dfd = open(dir.isEmpty ? "." : dir, O_RDONLY)
    if dfd >= 0 { fsync(dfd); close(dfd) }
}
