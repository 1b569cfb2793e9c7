#if canImport(Glibc)
    import Glibc
#endif

/// Unbuffered writes to stdout / stderr (progress lines must appear at once under mpirun).
public struct FileHandleOutput: Sendable {
    let fd: Int32
    public static let standardOutput = FileHandleOutput(fd: 1)
    public static let standardError = FileHandleOutput(fd: 2)
    public func write(_ s: String) {
        var bytes = Array(s.utf8)
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeMutableBytes { Glibc.write(fd, $0.baseAddress! + offset, $0.count - offset) }
            if n <= 0 { return }
            offset += n
        }
    }
}
