import ResNeXt

/// Turns records into normalised images (N, 3, 32, 32) and labels, with the standard CIFAR
/// augmentation: a random 32x32 crop of the image zero-padded by 4 (black pixels, as
/// torchvision's RandomCrop(32, padding=4) pads before normalising), then a horizontal flip with
/// probability 1/2. The crop and flip of an image depend only on (seed, epoch, image index).
public struct ImagePipeline: Sendable {
    public var augment: Bool
    public var seed: UInt64

    public init(augment: Bool, seed: UInt64) {
        self.augment = augment; self.seed = seed
    }

    /// Crop offsets (0...8 in each direction) and flip of one training image in one epoch.
    public func augmentation(epoch: Int, index: Int) -> (dy: Int, dx: Int, flip: Bool) {
        var rng = SplitMix64(seed: seed, UInt64(epoch), UInt64(index))
        let dy = rng.nextInt(below: 9), dx = rng.nextInt(below: 9)
        let flip = rng.next() >> 63 == 1
        return (dy, dx, flip)
    }

    /// Writes image `index` of `split` into `out` (3 x 32 x 32 floats), augmented when `epoch` is
    /// given and augmentation is on.
    public func image(_ split: CIFAR10.Split, index: Int, epoch: Int?, into out: UnsafeMutablePointer<Float>) {
        let (dy, dx, flip) = (augment && epoch != nil) ? augmentation(epoch: epoch!, index: index) : (4, 4, false)
        split.records.withUnsafeBufferPointer { raw in
            let pixels = raw.baseAddress! + index * CIFAR10.recordSize + 1
            for c in 0..<3 {
                let table = CIFAR10.normalised[c]
                let plane = pixels + c * 1024, dst = out + c * 1024
                for y in 0..<32 {
                    let sy = y + dy - 4
                    for x in 0..<32 {
                        let cx = flip ? 31 - x : x
                        let sx = cx + dx - 4
                        let byte: UInt8 = (sy >= 0 && sy < 32 && sx >= 0 && sx < 32) ? plane[sy * 32 + sx] : 0
                        dst[y * 32 + x] = table[Int(byte)]
                    }
                }
            }
        }
    }
}
