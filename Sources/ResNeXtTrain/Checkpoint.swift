import Foundation
import ResNeXt

/// A training checkpoint: one safetensors file holding the whole `state_dict` (PyTorch names,
/// so it also loads as a model), the momentum buffer of every parameter
/// (`optimizer.momentum.<name>`), and in its metadata the number of completed steps, the
/// running sums of the epoch so far, the run's settings, the convolution paths where they were
/// tuned, and a CRC-32C of every tensor. The data order, augmentation and learning rate are
/// functions of (seed, epoch, step), so this is everything a bit-exact resume needs, mid-epoch
/// too.
///
/// A run folder holds the last `--keep-checkpoints` of them as `checkpoint-STEP.safetensors`,
/// and `checkpoint.safetensors`, a second name of the newest. Every file is written atomically
/// (`writeAtomically`); `--resume FOLDER` takes the newest that verifies and says which ones it
/// passed over and why.
public enum Checkpoint {
    public static let fileName = "checkpoint.safetensors"
    public static let format = "resnext-ddp-checkpoint-1"
    public static let momentumPrefix = "optimizer.momentum."
    /// Metadata key of `ResNeXt.convolutionPaths`, present when the run tuned them.
    public static let pathsKey = "convolution_paths"
    /// Metadata key of the tensors' CRC-32C: a JSON object, name -> checksum.
    public static let checksumsKey = "tensor_crc32c"

    /// The epoch's running sums at the checkpoint's step, so that a run resumed mid-epoch reports
    /// the same epoch row as one that never stopped.
    public struct EpochSums: Equatable, Sendable {
        public var loss = 0.0, correct = 0.0, steps = 0
        public init(loss: Double = 0, correct: Double = 0, steps: Int = 0) { self.loss = loss; self.correct = correct; self.steps = steps }
    }

    /// What `load` restores besides the tensors.
    public struct Restored {
        public let step: Int
        public let paths: String?
        public let sums: EpochSums
    }

    /// The name of the checkpoint of `step` in a run folder.
    public static func name(step: Int) -> String { String(format: "checkpoint-%08d.safetensors", step) }

    public static func save(
        _ net: ResNeXt<Float>, step: Int, settings: TrainSettings, tunedPaths: Bool = false, sums: EpochSums = EpochSums(),
        to path: String
    ) throws {
        var tensors = net.stateDictTensors()
        let store = net.store
        for e in store.entries where e.kind == .parameter {
            tensors.append(
                SafeTensor(
                    name: momentumPrefix + e.name, shape: e.shape,
                    values: UnsafeBufferPointer(start: store.momentum.base + e.offset, count: e.count)))
        }
        var metadata = net.stateMetadata
        metadata["checkpoint"] = format
        metadata["step"] = "\(step)"
        metadata["settings"] = try settings.json()
        metadata["version"] = resnextDDPVersion
        metadata["epoch_loss_sum"] = "\(sums.loss)"
        metadata["epoch_correct"] = "\(sums.correct)"
        metadata["epoch_steps"] = "\(sums.steps)"
        if tunedPaths { metadata[pathsKey] = net.convolutionPaths }
        let checksums = Dictionary(uniqueKeysWithValues: tensors.map { ($0.name, String(crc32c($0.bytes), radix: 16)) })
        metadata[checksumsKey] = try snakeCaseJSON(checksums)
        try SafeTensorsFile.write(tensors, metadata: metadata, to: path)
    }

    /// Writes the checkpoint of `step` into the run folder `dir` as `checkpoint-STEP.safetensors`,
    /// makes `checkpoint.safetensors` a second name of it, and removes all but the newest `keep`.
    /// The newest file is complete before anything older goes.
    public static func save(
        _ net: ResNeXt<Float>, step: Int, settings: TrainSettings, tunedPaths: Bool, sums: EpochSums, into dir: String, keep: Int
    ) throws {
        let path = dir + "/" + name(step: step)
        try save(net, step: step, settings: settings, tunedPaths: tunedPaths, sums: sums, to: path)
        let latest = dir + "/" + fileName, link = dir + "/." + fileName + ".link-\(getpid())"
        unlink(link)
        guard Foundation.link(path, link) == 0, rename(link, latest) == 0 else {
            let e = errno
            unlink(link)
            throw ResNeXtError("\(latest): cannot point it at \(path): \(String(cString: strerror(e)))")
        }
        for (old, _) in numbered(in: dir).dropFirst(max(keep, 1)) { unlink(dir + "/" + old) }
    }

    /// The `checkpoint-STEP.safetensors` files of a run folder, newest first.
    static func numbered(in dir: String) -> [(name: String, step: Int)] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []
        return names.compactMap { name -> (String, Int)? in
            guard name.hasPrefix("checkpoint-"), name.hasSuffix(".safetensors") else { return nil }
            return Int(name.dropFirst("checkpoint-".count).dropLast(".safetensors".count)).map { (name, $0) }
        }.sorted { $0.1 > $1.1 }
    }

    /// The files `--resume PATH` tries, in order: the file itself; in a run folder, its
    /// numbered checkpoints newest first, else `checkpoint.safetensors` (runs before numbering).
    public static func candidates(_ path: String) -> [String] {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir), isDir.boolValue else { return [path] }
        let numbered = numbered(in: path).map { path + "/" + $0.name }
        return numbered.isEmpty ? [path + "/" + fileName] : numbered
    }

    /// Loads the first of `candidates(path)` that verifies; `warn` is told about each one passed
    /// over. Throws the first file's error when none does.
    public static func resume(_ path: String, into net: ResNeXt<Float>, warn: (String) -> Void) throws -> (path: String, restored: Restored) {
        let files = candidates(path)
        var firstError: Error? = nil
        for (i, file) in files.enumerated() {
            do {
                return (file, try load(file, into: net))
            } catch {
                if firstError == nil { firstError = error }
                if i + 1 < files.count { warn("warning: \(error); resuming from \(files[i + 1]) instead") }
            }
        }
        throw firstError!
    }

    /// Checks every tensor against the checksum the checkpoint recorded (files without checksums,
    /// from before they were recorded, pass). A mismatch names the tensor and its bytes.
    static func verify(_ file: SafeTensorsFile) throws {
        guard let text = file.metadata[checksumsKey] else { return }
        guard let recorded = try? JSONDecoder().decode([String: String].self, from: Data(text.utf8)) else {
            throw ResNeXtError("--resume \(file.path): the checksums in its metadata do not parse: the file is damaged")
        }
        for name in file.names {
            guard let expected = recorded[name].flatMap({ UInt32($0, radix: 16) }) else {
                throw ResNeXtError("--resume \(file.path): tensor '\(name)' has no checksum: the file is damaged")
            }
            try file.withBytes(of: name) { bytes, range in
                guard crc32c(bytes) == expected else {
                    throw ResNeXtError(
                        "--resume \(file.path): tensor '\(name)' (bytes \(range.lowerBound)-\(range.upperBound - 1)) does not match its checksum: the file is damaged"
                    )
                }
            }
        }
    }

    /// Restores weights, BN statistics, counters and momentum; returns the completed step count,
    /// the tuned convolution paths (nil where the run did not tune them) and the epoch's sums.
    /// A checkpoint of another model shape, or one that does not verify, is refused before
    /// anything is touched.
    public static func load(_ path: String, into net: ResNeXt<Float>) throws -> Restored {
        let file: SafeTensorsFile
        do { file = try SafeTensorsFile(path: path) } catch { throw ResNeXtError("--resume \(error)") }
        guard file.metadata["checkpoint"] == format, let step = file.metadata["step"].flatMap(Int.init) else {
            throw ResNeXtError("--resume \(path): not a resnext-ddp checkpoint (no step in its metadata); use --init to start from a model file")
        }
        try verify(file)
        if let recorded = ResNeXt<Float>.recordedConfig(file), recorded != net.config {
            throw ResNeXtError(
                "--resume \(path): the checkpoint is \(recorded), but this run builds \(net.config); resume with --depth \(recorded.depth) --cardinality \(recorded.cardinality) --base-channels \(recorded.baseChannels)"
            )
        }
        if let paths = file.metadata[pathsKey] {
            do { try net.setConvolutionPaths(paths) } catch { throw ResNeXtError("--resume \(path): \(error)") }
        }
        try net.loadStateDict(file, prefix: "", strict: false)
        for e in net.store.entries where e.kind == .parameter {
            let values = try file.floats(momentumPrefix + e.name)
            guard values.count == e.count else {
                throw ResNeXtError("--resume \(path): tensor '\(momentumPrefix + e.name)' has \(values.count) values, \(e.count) expected")
            }
            (net.store.momentum.base + e.offset).update(from: values, count: e.count)
        }
        let sums = EpochSums(
            loss: file.metadata["epoch_loss_sum"].flatMap(Double.init) ?? 0, correct: file.metadata["epoch_correct"].flatMap(Double.init) ?? 0,
            steps: file.metadata["epoch_steps"].flatMap(Int.init) ?? 0)
        return Restored(step: step, paths: file.metadata[pathsKey], sums: sums)
    }
}

public let resnextDDPVersion = "0.2.0"
