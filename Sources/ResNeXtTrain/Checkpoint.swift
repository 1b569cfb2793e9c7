import Foundation
import ResNeXt

/// A training checkpoint: one safetensors file holding the whole `state_dict` (PyTorch names,
/// so it also loads as a model), the momentum buffer of every parameter
/// (`optimizer.momentum.<name>`), and in its metadata the number of completed steps and the
/// run's settings, and the convolution paths where they were tuned. The data order,
/// augmentation and learning rate are functions of (seed, epoch, step), so this is everything
/// a bit-exact resume needs.
public enum Checkpoint {
    public static let fileName = "checkpoint.safetensors"
    public static let format = "resnext-ddp-checkpoint-1"
    public static let momentumPrefix = "optimizer.momentum."
    /// Metadata key of `ResNeXt.convolutionPaths`, present when the run tuned them.
    public static let pathsKey = "convolution_paths"

    public static func save(
        _ net: ResNeXt<Float>, step: Int, settings: TrainSettings, tunedPaths: Bool = false,
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
        if tunedPaths { metadata[pathsKey] = net.convolutionPaths }
        try SafeTensorsFile.write(tensors, metadata: metadata, to: path)
    }

    /// Where a --resume PATH points: the file itself, or a run folder holding checkpoint.safetensors.
    public static func resolve(_ path: String) -> String {
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDir), isDir.boolValue {
            return path + "/" + fileName
        }
        return path
    }

    /// Restores weights, BN statistics, counters and momentum; returns the completed step count,
    /// and the tuned convolution paths (nil where the run did not tune them).
    /// A checkpoint of another model shape is refused before anything is touched.
    public static func load(_ path: String, into net: ResNeXt<Float>) throws -> (step: Int, paths: String?) {
        let file = try SafeTensorsFile(path: path)
        guard file.metadata["checkpoint"] == format, let step = file.metadata["step"].flatMap(Int.init) else {
            throw ResNeXtError("--resume \(path): not a resnext-ddp checkpoint (no step in its metadata); use --init to start from a model file")
        }
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
        return (step, file.metadata[pathsKey])
    }
}

public let resnextDDPVersion = "0.2.0"
